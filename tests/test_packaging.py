"""The wheel works outside the repository.

Built from the checkout, installed with `--no-deps` into a fresh virtual environment that sees the project's
dependencies (a path line to this environment's site-packages, which runs none of its `.pth` files, so the editable
install stays invisible), and run from a folder that is not the checkout.
"""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _site_packages(env_dir: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)}))


@pytest.fixture(scope="module")
def installed(tmp_path_factory, plugin_wheel) -> Path:
    """A fresh venv with only our wheel installed; the project's dependencies are reached through a path line."""
    env_dir = tmp_path_factory.mktemp("wheel_env") / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    site = _site_packages(env_dir)
    (site / "_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install",
                    "--no-deps", "--no-index", "--quiet", str(plugin_wheel)], check=True, capture_output=True, text=True)
    return env_dir


def _run(env_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=540)


def test_wheel_carries_the_recipes_prompts_and_hook(plugin_wheel):
    names = set(zipfile.ZipFile(plugin_wheel).namelist())
    shipped = {name for name in names if name.startswith("llava_lf/resources/recipes/")}
    in_repo = {f"llava_lf/resources/recipes/{p.relative_to(REPO / 'yaml').as_posix()}"
               for p in (REPO / "yaml").rglob("*") if p.is_file() and p.suffix in {".yaml", ".json"}}
    assert in_repo and in_repo <= shipped  # every YAML users see in yaml/ ships
    assert "llava_lf.pth" in names
    assert any(name.startswith("llava_lf/data/generate/prompts/") for name in names)


def test_installed_wheel_runs_outside_the_checkout(installed, tmp_path, tiny_parts):
    work = tmp_path / "elsewhere"
    work.mkdir()
    python = installed / "bin" / "python"

    where = _run(installed, work, str(python), "-c", "import llava_lf; print(llava_lf.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed), "the test must run the wheel, not the checkout"

    helped = _run(installed, work, str(installed / "bin" / "llava-lf"), "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("assemble", "convert", "eval", "demo", "recipes"):
        assert command in helped.stdout

    clip, llama = tiny_parts
    assembled = _run(installed, work, str(installed / "bin" / "llava-lf"), "assemble", "--preset", "llava1_5_7b",
                     "--vision", str(clip), "--llm", str(llama), "--out", "llava", "--dtype", "float32", "--quiet")
    assert assembled.returncode == 0, assembled.stderr
    config = json.loads((work / "llava" / "config.json").read_text())
    assert (config["projector_hidden_act"], config["vision_feature_layer"]) == ("gelu", -2)  # the preset's choices

    demo = _run(installed, work, str(installed / "bin" / "llava-lf"), "demo", "--data-only", "--out", "demo",
                "--train-scenes", "6", "--test-scenes", "1")
    assert demo.returncode == 0, demo.stderr
    registered = json.loads((work / "demo" / "datasets" / "dataset_info.json").read_text())
    assert {"shapes_caption", "shapes_instruct", "shapes_text"} <= set(registered)
    assert (work / "demo" / "datasets" / registered["shapes_instruct"]["file_name"]).stat().st_size > 0


def test_recipes_copy_writes_the_repository_files(installed, tmp_path):
    copied = _run(installed, tmp_path, str(installed / "bin" / "llava-lf"), "recipes", "copy", "mine")
    assert copied.returncode == 0, copied.stderr
    compared = [p.relative_to(REPO / "yaml") for p in (REPO / "yaml").rglob("*") if p.is_file()
                and p.suffix in {".yaml", ".json"}]
    assert compared
    for relative in compared:  # one source of truth: what users copy is byte for byte what the repository holds
        assert filecmp.cmp(REPO / "yaml" / relative, tmp_path / "mine" / relative, shallow=False), relative

    again = _run(installed, tmp_path, str(installed / "bin" / "llava-lf"), "recipes", "copy", "mine")
    assert again.returncode == 2
    assert "pass --overwrite" in again.stderr and "Traceback" not in again.stderr
