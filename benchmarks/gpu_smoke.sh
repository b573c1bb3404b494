#!/usr/bin/env bash
# The first run on a GPU machine, every number at once, in at most 8 minutes on one GPU:
#   1. the device and software versions
#   2. the Triton kernels checked against their PyTorch references, then timed (benchmarks/kernels.py --quick)
#   3. training throughput per codec stage: ms per step, GFLOP per step and MFU, host syncs per step, the
#      loader's share of the step (benchmarks/loader_speed.py)
#   4. a few hundred steps of two stages (autoencoder; vocoder with its GAN from halfway) to a checkpoint,
#      launched by torchrun on every GPU of the machine (NCCL gradient averaging when there are several)
# Without a GPU each GPU part says why it is skipped and the rest runs small, in a few minutes on CPU.
#
#   bash benchmarks/gpu_smoke.sh [OUT_DIR]      # OUT_DIR (default: a fresh temporary dir) keeps logs and checkpoints
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${1:-$(mktemp -d -t duet-gpu-smoke.XXXX)}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
START=$SECONDS
section() { printf '\n== %s  (%ds)\n' "$*" $((SECONDS - START)); }
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")

section "1. device"
"$PY" -c "import torch, sys; print(f'python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}')"
if [ "$GPUS" -gt 0 ]; then
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import triton; print('triton', triton.__version__)"
else
  echo "no CUDA device: the GPU parts (kernel check and timing, MFU, host-sync count, NCCL) are skipped; the rest runs small on CPU"
fi

section "2. Triton kernels against their references, timed"
if [ "$GPUS" -gt 0 ]; then
  timeout 150 "$PY" benchmarks/kernels.py --quick | tee "$OUT/kernels.txt"
  if grep -q MISMATCH "$OUT/kernels.txt"; then echo "FAIL: a Triton kernel disagrees with its reference (above)"; exit 1; fi
else
  echo "skipped: no CUDA device to compile Triton for (tests/test_kernels_*.py check the kernels in Triton's CPU interpreter)"
fi

section "3. training throughput per stage"
if [ "$GPUS" -gt 0 ]; then
  timeout 150 "$PY" benchmarks/loader_speed.py --batch 32 --steps 40 --minutes 20 \
    --stages autoencoder semantic vocoder finetune 2>&1 | grep -v "Warning\|WeightNorm.apply" | tee "$OUT/throughput.txt"
else
  echo "CPU: batch 8, 4 steps, two stages (MFU and host syncs need a GPU)"
  timeout 300 "$PY" benchmarks/loader_speed.py --batch 8 --steps 4 --minutes 5 --stages autoencoder vocoder 2>&1 \
    | grep -v "Warning\|WeightNorm.apply" | tee "$OUT/throughput.txt"
fi

section "4. two stages to a checkpoint (torchrun, $([ "$GPUS" -gt 0 ] && echo "$GPUS GPU(s)" || echo "1 CPU process"))"
STEPS=300; NPROC=$GPUS; LIMIT=90  # s per stage; the GPU limits add up to 8 minutes
if [ "$GPUS" -eq 0 ]; then STEPS=6; NPROC=1; LIMIT=200; echo "CPU: $STEPS steps per stage instead of 300"; fi
"$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; \
from loader_speed import synthetic_shard; synthetic_shard(Path('$OUT/train.safetensors'), 10.0, 10.0)"
TORCHRUN=$(dirname "$PY")/torchrun
[ -x "$TORCHRUN" ] || TORCHRUN=torchrun
for stage in autoencoder vocoder; do
  conf=egs/mini/codec1/conf/stage1_autoencoder.yaml
  [ "$stage" = vocoder ] && conf=egs/mini/codec1/conf/stage3_vocoder.yaml
  t0=$SECONDS
  timeout $LIMIT "$TORCHRUN" --standalone --nproc_per_node="$NPROC" -m recipes.codec.train --config "$conf" \
    --out "$OUT/$stage" --no-progress --set shard="$OUT/train.safetensors" trainer.max_steps=$STEPS \
    trainer.warmup_steps=$((STEPS / 10)) trainer.log_every=$((STEPS / 3)) trainer.checkpoint_every=$STEPS \
    trainer.sample_every=0 adversarial_start=$((STEPS / 2)) > "$OUT/$stage.log" 2>&1 \
    || { tail -20 "$OUT/$stage.log"; echo "FAIL: $stage training"; exit 1; }
  ckpt="$OUT/$stage/step-$STEPS/model.safetensors"
  [ -f "$ckpt" ] || { echo "FAIL: no checkpoint $ckpt"; exit 1; }
  "$PY" - "$OUT/$stage" "$STEPS" "$((SECONDS - t0))" <<'EOF'
import sys
from pathlib import Path
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

run, steps, seconds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
acc = EventAccumulator(str(sorted((run / "tensorboard").glob("events.*"))[-1]))
acc.Reload()
last = {t: acc.Scalars(t)[-1].value for t in acc.Tags()["scalars"]}
losses = ", ".join(f"{k} {v:.3g}" for k, v in last.items() if "/" in k and not k.startswith(("time/", "grad_norm/")))
print(f"{run.name}: {steps} steps in {seconds} s (launch included) -> {run}/step-{steps}; last interval "
      f"{last.get('time/step_ms', float('nan')):.1f} ms/step, loader wait {last.get('time/loader_wait_ms', float('nan')):.2f} "
      f"ms/step; {losses}")
EOF
done

section "done in $((SECONDS - START)) s; logs and checkpoints in $OUT"
