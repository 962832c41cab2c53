"""lora-lab: Hydra-configured LoRA-family fine-tuning of LLMs."""
