"""The embedded default: a synthetic picture set and a tiny LLaVA that learns it on a laptop CPU."""
