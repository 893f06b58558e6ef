"""The `.pth` import hook: present, lazy, registering in fresh interpreters, opt-out, never fatal."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.host

# Each test marked slow starts a fresh interpreter that imports the host (5-15 s on two shared cores); the fast
# tier still goes through the hook in process: its first `import llamafactory` registers our templates.

CHECK_REGISTERED = (
    "import llamafactory.data.template as t; "
    "print(sorted(name for name in ('llava_v1', 'llava_plain') if name in t.TEMPLATES))"
)


def run_python(code: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_overrides}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_pth_file_sits_at_site_packages_root():
    pth = Path(sysconfig.get_paths()["purelib"]) / "llava_lf.pth"
    assert pth.is_file()
    assert pth.read_text().startswith("import sys; exec(")


@pytest.mark.slow
def test_fresh_interpreter_sees_our_templates():
    result = run_python(CHECK_REGISTERED)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['llava_plain', 'llava_v1']"
    assert "llava-lf:" not in result.stderr


def test_interpreter_start_imports_nothing_heavy():
    code = "import sys; print(sorted(m for m in ('torch', 'transformers', 'llamafactory') if m in sys.modules))"
    result = run_python(code)
    assert result.stdout.strip() == "[]"
    assert "llava_lf._hook" in run_python("import sys; print(list(sys.modules))").stdout


@pytest.mark.slow
def test_opt_out_environment_variable():
    result = run_python(CHECK_REGISTERED, LLAVA_LF_DISABLE_HOOK="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_registration_is_idempotent():
    code = "import llamafactory.data.template; from llava_lf.host.registration import register_all; print(register_all())"
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# Each imports the host from inside our package: the hook must still register once everything has loaded.
@pytest.mark.slow
@pytest.mark.parametrize("module", ["llava_lf.templates.conversation", "llava_lf.templates.mm_plugin", "llava_lf.host.registration"])
def test_importing_our_modules_first_still_registers(module):
    result = run_python(f"import {module}; {CHECK_REGISTERED}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['llava_plain', 'llava_v1']"
    assert "llava-lf:" not in result.stderr


@pytest.mark.slow
def test_doctor_exits_4_when_the_host_sees_none_of_our_templates():
    doctor = "from llava_lf.cli import main; main(['doctor'])"
    seen, unseen = run_python(doctor), run_python(doctor, LLAVA_LF_DISABLE_HOOK="1")
    assert seen.returncode == 0 and "llava_v1, llava_plain" in seen.stdout, seen.stdout + seen.stderr
    assert unseen.returncode == 4 and "registered with llamafactory: none" in unseen.stdout, unseen.stderr


def _fake_host(tmp_path: Path, template_source: str, init_source: str = "") -> Path:
    package = tmp_path / "llamafactory"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text(init_source)
    (package / "data" / "__init__.py").write_text("")
    (package / "data" / "template.py").write_text(textwrap.dedent(template_source))
    return tmp_path


def test_broken_host_costs_one_warning_line_not_the_interpreter(tmp_path):
    # A host whose template module lacks everything we register against.
    root = _fake_host(tmp_path, "TEMPLATES = {}\n")
    result = run_python("import llamafactory.data.template as t; print('alive', t.TEMPLATES)", PYTHONPATH=str(root))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alive {}"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("llava-lf:")]
    assert len(warnings) == 1 and "templates not registered" in warnings[0]
    assert "Traceback" not in result.stderr


def test_missing_host_leaves_the_interpreter_alone(tmp_path):
    root = _fake_host(tmp_path, "", init_source="raise ImportError('llamafactory is not installed here')\n")
    alive = run_python("print('alive')", PYTHONPATH=str(root))
    assert alive.returncode == 0 and alive.stdout.strip() == "alive" and alive.stderr == ""
    importing = run_python("import llamafactory.data.template", PYTHONPATH=str(root))
    assert importing.returncode == 1
    assert "llamafactory is not installed here" in importing.stderr  # the host's own error, untouched
    assert "llava-lf:" not in importing.stderr


@pytest.mark.parametrize("editable", [False, True], ids=["wheel", "editable"])
def test_built_wheels_carry_the_pth_at_their_root(tmp_path, plugin_wheel, editable):
    from hatchling.builders.wheel import WheelBuilder

    wheel = plugin_wheel  # the session's; an editable wheel is built here
    if editable:
        wheel = next(iter(WheelBuilder(str(REPO)).build(directory=str(tmp_path), versions=["editable"])))
    names = zipfile.ZipFile(wheel).namelist()
    assert "llava_lf.pth" in names
    if not editable:
        assert "llava_lf/_hook.py" in names


def test_after_import_runs_once_the_module_has_executed_and_then_leaves(tmp_path, monkeypatch):
    """The one after-import finder: a callback for a module not yet imported runs right after it executes, with the
    module whole; one for a loaded module runs at once; with nothing left to wait for, the finder leaves."""
    from llava_lf import _hook

    (tmp_path / "llava_lf_probe_a.py").write_text("VALUE = 1\n")
    (tmp_path / "llava_lf_probe_b.py").write_text("raise ImportError('b is broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = list(sys.meta_path)  # this session's own finder and its pending callbacks are put back after
    monkeypatch.setattr(_hook, "_pending", {})
    _hook.uninstall()
    seen = []
    try:
        _hook.after_import("llava_lf_probe_a", lambda module: seen.append(("a", module.VALUE)))
        assert sum(isinstance(finder, _hook.AfterImport) for finder in sys.meta_path) == 1
        import llava_lf_probe_a  # noqa: F401

        assert seen == [("a", 1)] and _hook._pending == {}
        assert not any(isinstance(finder, _hook.AfterImport) for finder in sys.meta_path)
        _hook.after_import("llava_lf_probe_b", lambda module: seen.append(("b", module)))
        with pytest.raises(ImportError, match="b is broken"):
            import llava_lf_probe_b  # noqa: F401
        assert list(_hook._pending) == ["llava_lf_probe_b"]  # a failed import runs it at the next try
        _hook.after_import("llava_lf_probe_a", lambda module: seen.append(("a again", module.VALUE)))
        assert seen == [("a", 1), ("a again", 1)]
    finally:
        sys.meta_path[:] = before
        sys.modules.pop("llava_lf_probe_a", None)


def test_the_hook_is_the_only_finder_in_the_package():
    """One after-import mechanism: no other module of the package defines a meta-path finder."""
    finders = sorted(str(path.relative_to(REPO)) for path in (REPO / "plugin" / "llava_lf").rglob("*.py")
                     if "def find_spec" in path.read_text())
    assert finders == ["plugin/llava_lf/_hook.py"]
