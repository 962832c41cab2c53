"""Config schemas and validation: every composed config is checked before any model is loaded."""
