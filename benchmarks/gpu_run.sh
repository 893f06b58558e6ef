#!/usr/bin/env bash
# The GPU measurement (LoRA speed, ZeRO rates) in one command, sized for 9 minutes on one H100 or H200, set-up included.
#
# Before, on a machine with the package index:  bash benchmarks/fetch_gpu_wheels.sh
# Then, on the GPU machine, from the repository root (dist/gpu-wheels copied along):
#   bash benchmarks/gpu_run.sh                 # 1. 7B shape: stock, ours, then ours with each speed option
#                                              # 2. tiny shape: stage-2 LoRA under ZeRO-2 and ZeRO-3, rates checked
#   PHASES=speed bash benchmarks/gpu_run.sh --variant mb32 per_device_train_batch_size=32   # more variants
# Arguments go to phase 1's lora_speed.py. Results under $OUT (default runs/bench): speed/lora_speed.json
# (+ .png, logs/), zero/lora_speed.json and zero/zero_rates.json. The 13.5 GB model and the data go to
# $WORK (default /tmp/lora_speed), never $OUT. Each phase ends within its budget (SPEED_S, ZERO_S);
# the runs finished by then are in its JSON, in the order listed below (the most informative first).
# A local check without a GPU (the test suite runs both):
#   PHASES=zero PYTHON_BIN=.venv/bin/python DS_ACCELERATOR=cpu ZERO_S=600 ZERO_RUN_S=280 bash benchmarks/gpu_run.sh
#   PHASES=speed PYTHON_BIN=.venv/bin/python bash benchmarks/gpu_run.sh --plan-only   # 7B plans, nothing trained
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
wheels=${WHEELS:-dist/gpu-wheels}
out=${OUT:-runs/bench}
work=${WORK:-/tmp/lora_speed}
venv=${VENV:-/tmp/llava-lf-venv}
phases=${PHASES:-speed zero}
speed_s=${SPEED_S:-390}  # 7B: model build ~60 s, then ~60 s per run of 10 steps
zero_s=${ZERO_S:-90}     # tiny model, 4 steps per run; DeepSpeed's start-up dominates
zero_run_s=${ZERO_RUN_S:-80}  # per ZeRO run (a CPU check on shared cores needs more)

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
names = ("torch", "transformers", "peft", "llamafactory", "llamafactory-llava", "deepspeed")
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"
print("versions:", ", ".join(f"{name} {version(name)}" for name in names))
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")
EOF
echo "set-up took $((SECONDS - started))s"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
projector="mm_projector_lr=2.0e-5,group_by_modality=true"  # the shipped YAML's optim_args, extended per variant
status=0

if [[ " $phases " == *" speed "* ]]; then
  # Phase 1: each option alone on top of ours, so each figure is that option's gain. Off by default in
  # the shipped YAML until these figures say otherwise (docs/performance.md).
  timeout --signal=TERM --kill-after=30 "$speed_s" \
    "$python" benchmarks/lora_speed.py --out "$out/speed" --work "$work" --steps 10 --warmup-steps 3 \
      --run-timeout 150 \
      --variant recompute16 "optim_args=$projector,recompute_layers=16" \
      --variant sdpa_flash flash_attn=sdpa "optim_args=$projector,sdpa_backend=flash" \
      --variant compiled "optim_args=$projector,compile_layers=true" \
      --variant sdpa_cudnn flash_attn=sdpa "optim_args=$projector,sdpa_backend=cudnn" \
      "$@" || status=$?
fi

if [[ " $phases " == *" zero "* ]]; then
  # Phase 2: stage-2 LoRA under DeepSpeed on the tiny shape, LoRA at 2e-4 and the projector at its own 2e-5:
  # the rates are read back from each run's llava_lf_training.json. The benchmark trains in-process
  # (run_exp), so the environment torchrun would give one process is set here (else DeepSpeed looks for MPI).
  ds=$PWD/yaml/deepspeed
  RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=${MASTER_PORT:-29517} timeout --signal=TERM --kill-after=20 "$zero_s" \
    "$python" benchmarks/lora_speed.py --tiny --out "$out/zero" --work "$work/zero" --steps 4 --warmup-steps 1 \
      --run-timeout "$zero_run_s" --skip stock ours --loss-rtol 1 \
      --variant z2 learning_rate=2.0e-4 "deepspeed=$ds/ds_z2_config.json" \
      --variant z3 learning_rate=2.0e-4 "deepspeed=$ds/ds_z3_config.json" || true
  "$python" benchmarks/zero_rates.py "$out/zero/lora_speed.json" z2 z3 --lr 2.0e-4 --projector-lr 2.0e-5 || status=1
fi
echo "gpu_run: done in $((SECONDS - started))s, exit $status"
exit "$status"
