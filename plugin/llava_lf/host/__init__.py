"""What runs inside `llamafactory-cli`: templates, the mm plugin, truncation and its report, training options.

Importing this package imports the host's template registry first. With the `.pth` hook installed, that
registers our templates and plugins (`registration.register_all`) before any module below executes, so
none of them has to register itself, and importing one of ours first cannot leave the host without them.
"""

import llamafactory.data.template  # noqa: F401  (fires the import hook; see llava_lf._hook)
