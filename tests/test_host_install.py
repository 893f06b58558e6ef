"""Installing the plugin keeps the user's host: in an environment that already holds LLaMA-Factory (the host's main
branch as `make install-main` installed it, from a wheel or a git URL, or the 0.9.5 release), `pip install` of our
wheel, with its dependencies resolved, leaves llamafactory and transformers at the same version in the same place,
and installs nothing the host pins. A pin like `llamafactory==0.9.5` in pyproject.toml fails here (pip would put
0.9.5 over main).

Cheap: each environment is a fresh venv without pip that reaches a `make` environment's site-packages through a
path line (which runs none of that folder's `.pth` files, so its editable install of the plugin stays invisible),
as tests/test_packaging.py does; for main, the host itself is installed `--no-deps` into the new venv.
Only our wheel is installed for real; everything else is already there, so pip needs the index only when it
would replace something."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.host, pytest.mark.timeout(600)]

ENVIRONMENTS = {"release": REPO / ".venv", "main": REPO / ".venv-main"}
KEPT = ("llamafactory", "transformers")
PROBE = """
import importlib.metadata as metadata, importlib.util, json, re
found = {}
for name in ("llamafactory", "transformers"):
    dist = metadata.distribution(name)
    found[name] = {"version": dist.version, "origin": importlib.util.find_spec(name).origin}
pins = metadata.requires("llamafactory") or []
found["host_requires"] = sorted({re.split(r"[ ;<>=!~\\[(]", pin, maxsplit=1)[0].lower() for pin in pins})
print(json.dumps(found))
"""


def _site_packages(env_dir: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)}))


def _pip(env_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"),
                           "--disable-pip-version-check", *args], capture_output=True, text=True, timeout=540)


def _probe(env_dir: Path) -> dict:
    result = subprocess.run([str(env_dir / "bin" / "python"), "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _host_main_source(main_venv: Path) -> str:
    """Where `make install-main` took the host's main from, as its stamp records it: a wheel or a pip git URL."""
    stamp = main_venv / ".installed"
    source = stamp.read_text().strip() if stamp.exists() else ""
    if not (source.startswith("git+") or source.endswith(".whl") and Path(source).is_file()):
        pytest.skip(f"{stamp} names no host main wheel or git URL (`make install-main` writes it)")
    return source


def _host_environment(tmp_path: Path, host: str) -> Path:
    """A fresh venv that reaches a `make` environment's packages; main's host is its own, from where `make` took it."""
    source = ENVIRONMENTS[host]
    host_main = None
    if not (source / "bin" / "python").exists():
        pytest.skip(f"{source.name} is missing: `make install-main` (or `make install`) creates it")
    if host == "main":
        host_main = _host_main_source(source)
    env_dir = tmp_path / f"{host}_env"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    (_site_packages(env_dir) / "_host_dependencies.pth").write_text(f"{_site_packages(source)}\n")
    if host_main is not None:  # a git URL is built here (pip fetches the build backend from the index)
        offline = [] if host_main.startswith("git+") else ["--no-index"]
        installed = _pip(env_dir, "install", "--no-deps", *offline, "--ignore-installed", "--quiet", host_main)
        assert installed.returncode == 0, installed.stderr
        assert _probe(env_dir)["llamafactory"]["origin"].startswith(str(env_dir)), "the host must be the venv's own"
    return env_dir


@pytest.mark.parametrize("host", list(ENVIRONMENTS))
def test_installing_the_plugin_keeps_the_host_and_its_transformers(tmp_path, plugin_wheel, host):
    env_dir = _host_environment(tmp_path, host)
    before = _probe(env_dir)
    report = tmp_path / "report.json"
    installed = _pip(env_dir, "install", "--quiet", "--report", str(report), str(plugin_wheel))
    assert installed.returncode == 0, f"pip could not install the plugin next to host {host}:\n{installed.stderr}"

    planned = {_normalise(item["metadata"]["name"]): item["metadata"]["version"]
               for item in json.loads(report.read_text())["install"]}
    assert "llamafactory-llava" in planned, planned
    touched = {name: version for name, version in planned.items()
               if name in {*KEPT, *map(_normalise, before["host_requires"])}}
    assert not touched, (f"installing the plugin over host {host} (llamafactory {before['llamafactory']['version']}, "
                         f"transformers {before['transformers']['version']}) would install {touched}: check "
                         "pyproject.toml's dependencies against the host's pins")
    after = _probe(env_dir)
    for name in KEPT:
        assert after[name] == before[name], f"{name} changed: {before[name]} -> {after[name]}"
    plugin = subprocess.run([str(env_dir / "bin" / "python"), "-c", "import llava_lf; print(llava_lf.__file__)"],
                            capture_output=True, text=True, timeout=120)
    assert plugin.returncode == 0 and plugin.stdout.strip().startswith(str(env_dir)), plugin.stderr
