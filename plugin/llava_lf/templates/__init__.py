"""The LLaVA templates in LLaMA-Factory: `llava_v1`, `llava_plain`, the `llava_lf` mm plugin, fast encoding.

Importing this package imports the host's template registry first, which (through the `.pth` hook) registers ours
before any module below runs, so none of them registers itself.
"""

import llamafactory.data.template  # noqa: F401  (fires the import hook; see llava_lf._hook)
