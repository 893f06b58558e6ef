"""What plugs into the host: registration (templates, mm plugin, the `report_to` callback, exit handling) and the
seams in `patches/`, each a wrapped host function checked by its shape (docs/compatibility.md).

Importing this package loads nothing of the host; its modules import LLaMA-Factory where they need it.
"""
