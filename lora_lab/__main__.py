"""`python -m lora_lab` runs the same Hydra app as the `lora-lab` console script."""

from lora_lab.cli import main

if __name__ == "__main__":
    main()
