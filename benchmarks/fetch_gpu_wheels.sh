#!/usr/bin/env bash
# Prepare, on a machine with the package index, everything a GPU machine without it needs for
# gpu_run.sh: the host's pinned wheels that a Python 3.12 + torch image lacks, and this project's wheel.
#
#   bash benchmarks/fetch_gpu_wheels.sh [DIR]        # default DIR: dist/gpu-wheels (git-ignored)
#   PY_VERSION=3.11 bash benchmarks/fetch_gpu_wheels.sh   # for a GPU machine with Python 3.11
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-dist/gpu-wheels}
py_version=${PY_VERSION:-3.12}
python=${PYTHON:-.venv/bin/python}
mkdir -p "$dir"
rm -f "$dir"/llamafactory_llava-*.whl

# The versions this project is tested with (the host's pins); torch, numpy, pillow, pyarrow and the
# other common packages come with the GPU image.
pins=(llamafactory==0.9.5 transformers==5.6.0 tokenizers==0.22.2 peft==0.18.1 trl==0.24.0 datasets==4.0.0
      accelerate==1.11.0 dill==0.3.8 multiprocess==0.70.16 omegaconf==2.4.0 antlr4-python3-runtime==4.13.2
      torchdata==0.11.0 fsspec==2025.3.0 opentelemetry-api==1.45.2 liger-kernel==0.8.5 orjson==3.13.0
      einops==0.8.1 hjson==3.1.0 msgpack==1.1.1 ninja==1.13.0 py-cpuinfo==9.0.0)  # the last five: DeepSpeed's
# DeepSpeed publishes no wheel: build one from its source (pure Python; its CUDA ops compile at first use).
deepspeed=deepspeed==0.19.8
# What these come to is listed in benchmarks/gpu_wheels.txt (file, bytes); tests/test_speed_benchmark.py checks
# that the list covers every pin and fits the device's 64 MiB per run with the repository. Update it with:
#   (cd DIR && ls -l --time-style=+ *.whl | awk '{print $6, $5}') > benchmarks/gpu_wheels.txt
for requirement in "${pins[@]}" "${@:2}"; do
  "$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$py_version" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --dest "$dir" "$requirement" \
    2> >(grep -v 'is ignored' >&2)
done

rm -f "$dir"/deepspeed-*.whl
DS_BUILD_OPS=0 "$python" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$dir" "$deepspeed"

# This project, as a wheel: its .pth hook must land in the GPU machine's site-packages.
"$python" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$dir" .
du -sh "$dir"
ls "$dir"
