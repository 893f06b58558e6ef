"""Where `make test` takes the host's main from, in a fresh clone: the Makefile copied alone into a folder, with and
without a `../shared/hosts` wheel beside it and with a local git repository standing in for the public one. Only
`make host-main` (the choice, checked) and `make -q` (is the venv current) run: nothing is installed."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEEL = "llamafactory-0.9.6.dev0-py3-none-any.whl"

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git")


def _clone(tmp_path: Path, *, wheel: bool) -> Path:
    """A folder holding the Makefile and a pyproject.toml, with `../shared/hosts/<wheel>` beside it or not."""
    clone = tmp_path / "work" / "main"
    clone.mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", clone / "Makefile")
    (clone / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    if wheel:
        hosts = tmp_path / "work" / "shared" / "hosts"
        hosts.mkdir(parents=True)
        (hosts / WHEEL).write_bytes(b"")
    return clone


def _git_repo(tmp_path: Path) -> str:
    """A local repository with one commit, in pip's git URL form."""
    repo = tmp_path / "host-main"
    repo.mkdir()
    (repo / "README").write_text("stand-in\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for args in (["init", "-q"], ["add", "README"], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    return f"git+file://{repo}@{commit.stdout.strip()}"


def _make(clone: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOST_MAIN", "MAKE"))}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_wheel_beside_the_clone_is_used(tmp_path):
    result = _make(_clone(tmp_path, wheel=True), "host-main")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"wheel ../shared/hosts/{WHEEL}\n"


def test_without_a_wheel_the_git_url_is_used(tmp_path):
    url = _git_repo(tmp_path)
    result = _make(_clone(tmp_path, wheel=False), "host-main", f"HOST_MAIN_GIT={url}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"git {url}\n"


def test_the_default_git_url_is_the_public_repository_at_a_commit(tmp_path):
    makefile = (ROOT / "Makefile").read_text()
    commit = re.search(r"^HOST_MAIN_COMMIT \?= ([0-9a-f]{40})$", makefile, re.M).group(1)
    assert "HOST_MAIN_GIT ?= git+https://github.com/hiyouga/LLaMA-Factory@$(HOST_MAIN_COMMIT)" in makefile
    hosts_readme = ROOT.parent / "shared" / "hosts" / "README.md"
    if hosts_readme.exists():  # the wheel beside this checkout was built from that same commit
        assert commit in hosts_readme.read_text()


def test_a_named_source_wins(tmp_path):
    url = _git_repo(tmp_path)
    clone = _clone(tmp_path, wheel=True)
    assert _make(clone, "host-main", f"HOST_MAIN_GIT={url}").stdout == f"git {url}\n"
    other = tmp_path / "other.whl"
    other.write_bytes(b"")
    assert _make(clone, "host-main", f"HOST_MAIN_WHEEL={other}", f"HOST_MAIN_GIT={url}").stdout == f"wheel {other}\n"


@pytest.mark.parametrize("target", ["host-main", "install-main"])
def test_neither_wheel_nor_reachable_url_is_one_line_naming_both_ways(tmp_path, target):
    clone = _clone(tmp_path, wheel=False)
    result = _make(clone, target, f"HOST_MAIN_GIT=git+file://{tmp_path}/missing@0123abc")
    assert result.returncode != 0
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith(f"No host main: cannot reach git+file://{tmp_path}/missing@0123abc")
    assert "HOST_MAIN_WHEEL=" in lines[0] and "HOST_MAIN_DIR=" in lines[0] and "HOST_MAIN_GIT=" in lines[0]
    assert not (clone / ".venv-main").exists()


def test_a_named_folder_without_a_wheel_is_an_error_not_the_git_url(tmp_path):
    clone = _clone(tmp_path, wheel=False)
    result = _make(clone, "host-main", f"HOST_MAIN_DIR={tmp_path}", f"HOST_MAIN_GIT={_git_repo(tmp_path)}")
    assert result.returncode != 0
    assert result.stdout.startswith(f"No host main: no llamafactory-*.whl at {tmp_path};")


def test_the_venv_is_made_again_when_the_source_changes(tmp_path):
    url = _git_repo(tmp_path)
    clone = _clone(tmp_path, wheel=False)
    stamp = clone / ".venv-main" / ".installed"
    stamp.parent.mkdir()
    stamp.write_text(url + "\n")
    os.utime(clone / "pyproject.toml", (1, 1))
    assert _make(clone, "-q", "install-main", f"HOST_MAIN_GIT={url}").returncode == 0  # current
    assert _make(clone, "-q", "install-main", f"HOST_MAIN_GIT={url}x").returncode != 0  # another commit
    wheel_clone = _clone(tmp_path / "b", wheel=True)
    (wheel_clone / ".venv-main").mkdir()
    (wheel_clone / ".venv-main" / ".installed").write_text(url + "\n")
    os.utime(wheel_clone / "pyproject.toml", (1, 1))
    os.utime(tmp_path / "b" / "work" / "shared" / "hosts" / WHEEL, (1, 1))
    assert _make(wheel_clone, "-q", "install-main").returncode != 0  # a wheel appeared beside the clone
