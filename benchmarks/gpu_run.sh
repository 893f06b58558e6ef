#!/usr/bin/env bash
# Issue 9's GPU measurement in one command, sized for a 15-minute device budget (one H100 or H200).
#
# Before, on a machine with the package index:  bash benchmarks/fetch_gpu_wheels.sh
# Then, on the GPU machine, from the repository root (dist/gpu-wheels copied along):
#   bash benchmarks/gpu_run.sh                      # stock vs ours, 7B shape
#   bash benchmarks/gpu_run.sh --variant nockpt disable_gradient_checkpointing=true
# Arguments go to lora_speed.py. Results: $OUT (default runs/bench/lora_speed): lora_speed.json,
# lora_speed.png, logs/. The 13.5 GB model and the data go to $WORK (default /tmp/lora_speed), never $OUT.
# Everything ends within $BUDGET_S seconds (default 540); runs finished by then are in the JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
budget=${BUDGET_S:-540}
wheels=${WHEELS:-dist/gpu-wheels}
out=${OUT:-runs/bench/lora_speed}
work=${WORK:-/tmp/lora_speed}
venv=${VENV:-/tmp/llava-lf-venv}

if [[ -n "${PYTHON_BIN:-}" ]]; then  # an environment that already has everything (a local check)
  python=$PYTHON_BIN
else
  if ! ls "$wheels"/llamafactory_llava-*.whl >/dev/null 2>&1; then
    echo "gpu_run: no project wheel in $wheels; run benchmarks/fetch_gpu_wheels.sh where the package" \
         "index is reachable and bring $wheels along" >&2
    exit 2
  fi
  # A venv that sees the image's torch, so our .pth hook is processed (PYTHONPATH folders never run .pth files).
  python3 -m venv --without-pip --system-site-packages "$venv"
  python=$venv/bin/python
  "$python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps "$wheels"/*.whl
fi
"$python" - <<'EOF'
import importlib.metadata as metadata, torch
names = ("torch", "transformers", "peft", "llamafactory", "llamafactory-llava")
print("versions:", ", ".join(f"{name} {metadata.version(name)}" for name in names))
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")
EOF
echo "set-up took $((SECONDS - started))s"

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
left=$((budget - (SECONDS - started)))
timeout --signal=TERM --kill-after=30 "$left" \
  "$python" benchmarks/lora_speed.py --out "$out" --work "$work" --run-timeout 240 "$@"
