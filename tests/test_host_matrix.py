"""The host matrix cannot silently miss a test: `make test` runs the whole suite on the release host (.venv) and
the tests marked `host` on the host's main branch (.venv-main). Every test file that reaches the host, by name
(`llamafactory`, `llamafactory-cli`, `llava_lf.host`) or through one of the plugin modules that always import it,
carries `pytestmark = pytest.mark.host` (alone or in a list). Indirect uses these names cannot see (a converter
cutoff, say) are found by `make audit-host`, which runs the other tests with an importable host that refuses.
Also: the project's host range admits both hosts of the matrix, and the Makefile's list of tests the main run
leaves out names tests that exist."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import REPO

TESTS = REPO / "tests"
# `llamafactory-llava` / `llamafactory_llava` is this project, not the host.
MENTIONS_HOST = re.compile(r"llamafactory(?![-_]llava)|llava_lf\.host\b")
# Plugin modules that import the host whenever they are used (the templates package loads the host's registry first,
# the evaluation predictor loads the host's template, chat runs its ChatModel, the demo pipeline its CLI).
IMPORTS_THE_HOST = re.compile(r"llava_lf\.(templates|evaluation\.predict|chat|demo\.pipeline)\b")
# Files that name the host without reaching it, each with the reason; kept here, in one reviewed place.
NOT_HOST_FACING = {
    "test_host_matrix.py": "this check: it reads the test files as text",
    "test_convert_hostile.py": "names the host only to assert that `llava-lf convert` starts without importing it",
    "test_makefile_host_main.py": "names the host's wheel and repository to check the Makefile's choice; installs nothing",
}


def _marks(node: ast.expr) -> list[str]:
    """`pytest.mark.NAME` / `pytest.mark.NAME(...)` names in a pytestmark value (one mark or a list/tuple)."""
    items = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    names = []
    for item in items:
        if isinstance(item, ast.Call):
            item = item.func
        if isinstance(item, ast.Attribute) and ast.unparse(item.value) == "pytest.mark":
            names.append(item.attr)
    return names


def module_marks(path: Path) -> list[str]:
    """The marks a file's module-level `pytestmark` assigns (empty when it has none)."""
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(target, ast.Name) and target.id == "pytestmark" for target in targets) and node.value:
            return _marks(node.value)
    return []


def host_facing(path: Path) -> bool:
    text = path.read_text()
    return bool(MENTIONS_HOST.search(text) or IMPORTS_THE_HOST.search(text))


def test_every_file_that_reaches_the_host_is_marked_host():
    files = sorted(TESTS.glob("test_*.py"))
    assert len(files) > 40, "the glob must see the suite"
    unmarked = [path.name for path in files
                if host_facing(path) and path.name not in NOT_HOST_FACING and "host" not in module_marks(path)]
    assert not unmarked, (
        "these files reach LLaMA-Factory but lack the `host` mark, so `make test` would not run them on the host's "
        f"main branch: {unmarked}; add `pytestmark = pytest.mark.host` (or put `pytest.mark.host` in its list)")


def test_exemptions_are_current():
    for name, reason in NOT_HOST_FACING.items():
        path = TESTS / name
        assert path.is_file(), f"{name} is gone: drop it from NOT_HOST_FACING"
        assert host_facing(path), f"{name} no longer names the host: drop it from NOT_HOST_FACING ({reason})"
        assert "host" not in module_marks(path), f"{name} is marked host and exempted: choose one"


def test_the_check_reads_marks_as_pytest_does(tmp_path):
    cases = {
        "pytestmark = pytest.mark.host\n": ["host"],
        "pytestmark = [pytest.mark.slow, pytest.mark.host, pytest.mark.timeout(600)]\n": ["slow", "host", "timeout"],
        "pytestmark: list = (pytest.mark.host,)\n": ["host"],
        "pytestmark = pytest.mark.slow\n": ["slow"],
        "def test_x():\n    pytestmark = pytest.mark.host\n": [],  # not module level
        "# pytestmark = pytest.mark.host\n": [],
    }
    for source, expected in cases.items():
        (tmp_path / "test_case.py").write_text("import pytest\n" + source)
        assert module_marks(tmp_path / "test_case.py") == expected, source
    assert not MENTIONS_HOST.search("pip install llamafactory-llava; import llamafactory_llava")
    assert MENTIONS_HOST.search("`llamafactory-cli train`") and MENTIONS_HOST.search("from llava_lf.host import x")


def test_the_host_mark_is_registered():
    markers = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert any(marker.split(":")[0].strip() == "host" for marker in markers)


def test_the_project_admits_both_hosts_of_the_matrix():
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    host = next(req for req in map(Requirement, project["dependencies"]) if req.name == "llamafactory")
    versions = ["0.9.5"] + [path.name.split("-")[1] for path in (REPO.parent / "shared" / "hosts").glob(
        "llamafactory-*.whl")]
    refused = [version for version in versions if not host.specifier.contains(version, prereleases=True)]
    assert not refused, f"pyproject.toml's `{host}` refuses host {refused}: pip would replace the user's host"


def test_the_main_runs_left_out_tests_exist():
    """`make test-main` deselects tests that do not depend on the host's version; each entry must still exist."""
    makefile = (REPO / "Makefile").read_text()
    block = re.search(r"^MAIN_DESELECT\s*:?=(.*?)(?:\n(?!\t| )|\Z)", makefile, re.S | re.M)
    assert block, "Makefile: MAIN_DESELECT not found"
    entries = [entry.strip("'\"") for entry in re.findall(r"tests/[^\s'\"]+", block.group(1))]
    assert entries
    generated = []  # parameters built at collection (from the documents, say): asked of pytest itself below
    for entry in entries:
        file, _, name = entry.partition("::")
        assert (REPO / file).is_file(), f"Makefile MAIN_DESELECT: {entry}: no such file"
        function = name.split("[")[0]
        tree = ast.parse((REPO / file).read_text())
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert not function or function in defined, f"Makefile MAIN_DESELECT: {entry}: no such test"
        if "[" in name and name.split("[", 1)[1].rstrip("]") not in (REPO / file).read_text():
            generated.append(entry)
        assert "host" in module_marks(REPO / file), f"Makefile MAIN_DESELECT: {entry}: not a host-marked file"
    if generated:  # pytest exits 4 naming the first id it cannot find
        found = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                *generated], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert found.returncode == 0, f"Makefile MAIN_DESELECT: no such parameter: {found.stdout[-2000:]}"
