"""The data side of the recipe: GPT-assisted generation, conversion to the host's format, modality order."""
