"""What plugs into the host: `registration` (templates, mm plugin, the `report_to` callback, exit handling), run by the
import hook. The symbols it relies on are declared and checked in `llava_lf.seams` (docs/compatibility.md).

Importing this package loads nothing of the host; its modules import LLaMA-Factory where they need it.
"""
