"""Console scripts that work on a saved adapter or model folder: `lora-lab-merge`, `lora-lab-generate`."""
