"""One module per benchmark: its files, its prompts and the published scoring rules."""
