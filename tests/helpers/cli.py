"""`llava-lf ARGS` run in the test's own process: the command's parser and error handling (`llava_lf.cli.run`), its
exit code, and what it printed. For contract tests (exit codes, messages, files written) that need no fresh
interpreter; the console script itself is still run as a subprocess by the tests whose point it is
(test_convert_hostile, test_convert_fuzz, test_packaging, the kill tests, the `.pth` hook's)."""

from __future__ import annotations

import contextlib
import io
import subprocess


def llava_lf(*args: object) -> subprocess.CompletedProcess:
    """`llava-lf ARGS` in process: returncode as the console script would exit, stdout and stderr as text.

    Output printed to `sys.stdout` / `sys.stderr` is captured (a logging handler made earlier keeps its own stream).
    """
    argv = [str(arg) for arg in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            from llava_lf.cli import run

            code = run(argv)
        except SystemExit as exit_:  # argparse's usage errors (2), --help (0)
            code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
    return subprocess.CompletedProcess(["llava-lf", *argv], code, out.getvalue(), err.getvalue())
