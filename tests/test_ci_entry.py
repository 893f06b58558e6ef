""".ci/run, the CI entry point, with stand-in `apt-get` and `make` on a PATH without chromium: a failed browser
install stops it before the suite (the webchat test would otherwise run without its browser), and the suite runs
under CI=true (where that test fails instead of skipping)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_ci(tmp_path: Path, apt_status: int) -> subprocess.CompletedProcess:
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "apt-get").write_text(f"#!{shutil.which('bash')}\necho \"apt-get $*\"\nexit {apt_status}\n")
    (bin_dir / "make").write_text(f"#!{shutil.which('bash')}\necho \"make $* CI=$CI\"\n")
    for script in ("apt-get", "make"):
        (bin_dir / script).chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    return subprocess.run([str(bin_dir / "bash"), str(repo / ".ci" / "run")], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.skipif(os.name != "posix", reason="a bash script")
def test_a_failed_chromium_install_stops_ci_before_the_suite(tmp_path):
    result = _run_ci(tmp_path, apt_status=100)
    assert result.returncode != 0
    assert "apt-get update -qq" in result.stdout and "make" not in result.stdout
    assert "installing chromium failed" in result.stderr


@pytest.mark.skipif(os.name != "posix", reason="a bash script")
def test_ci_installs_chromium_then_runs_make_test_under_ci_true(tmp_path):
    result = _run_ci(tmp_path, apt_status=0)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["apt-get update -qq", "apt-get install -y -qq chromium",
                                          "make test CI=true"]
