"""The LLaVA templates in LLaMA-Factory: `llava_v1` and `llava_plain`, the `llava_lf` mm plugin, fast encoding.

Importing this package imports the host's template registry first. With the `.pth` hook installed, that
registers our templates and plugins (`llava_lf.host.registration.register_all`) before any module below
executes, so none of them has to register itself, and importing one of ours first cannot leave the host
without them. The pure rules they use (turn fitting, its report, the image-token count) live in
`llava_lf.common` and load no host.
"""

import llamafactory.data.template  # noqa: F401  (fires the import hook; see llava_lf._hook)
