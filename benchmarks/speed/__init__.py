"""The LoRA SFT speed benchmark (stock LLaMA-Factory vs our recipe YAML), split by job.

`model` builds the random LLaVA-1.5-shaped checkpoint, `data` the synthetic datasets, `configs` the two
training configurations, `runner` + `probe` run and measure one training, `metrics` turns step records
into tokens/s, MFU and a loss comparison, and `report` writes JSON, a table and a PNG chart.
`../lora_speed.py` is the command that ties them together.
"""
