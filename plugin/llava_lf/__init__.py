"""llamafactory-llava: the LLaVA recipe as a LLaMA-Factory plugin.

Kept import-free on purpose: the site-packages `.pth` hook imports this package in every interpreter.
"""

__version__ = "0.1.0"
