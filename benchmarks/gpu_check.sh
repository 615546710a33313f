#!/usr/bin/env bash
# The GPU checks of issues #17 and #22, one prepared script for a lent GPU machine (device tool):
#   1. distillation s/iteration, official vs condensekit, interleaved cell by cell
#      (shared/anchors/side_by_side.sh: DM, DataDAM, DANCE at IPC 1, 10, 50), plus peak memory
#      (torch.cuda.max_memory_allocated on both sides);
#   2. evaluation, 5 runs x 1000 epochs of a random real CIFAR-10 IPC 10 set: DC's evaluate_synset
#      vs `condensekit eval --protocol dc` (batched ensemble by default on CUDA), fp32, then
#      condensekit in bf16 (shared/anchors/eval_side_by_side.sh).
# Prepare here first: bash benchmarks/gpu_prepare.sh (fills .gpu/), then on the device:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".gpu"], timeout_s=540)
# Results: JSON lines in $OUT (or .gpu/results) and a summary on stdout.
# QUICK=1 shrinks every cell (1 IPC, 2 epochs) to check the plumbing on any machine.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT"
G=$ROOT/.gpu
PY=${PYTHON:-python3}
RESULTS=${OUT:-$G/results}; mkdir -p "$RESULTS"
[ -d "$G/src" ] || { echo "no $G: run benchmarks/gpu_prepare.sh here first" >&2; exit 1; }
export PYTHONUNBUFFERED=1 NO_COLOR=1
if [ -z "${SKIP_INSTALL:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$G"/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . $(for p in plugins/*/; do printf -- '-e %s ' "$p"; done) || exit 1
fi
# The anchors scripts call CHECKOUT/.venv/bin/{python,condensekit} and $ANCHORS_VENV/bin/python:
# here one interpreter runs both sides.
PYABS=$(command -v "$PY"); BIN=$(dirname "$PYABS")
wrap() { mkdir -p "$(dirname "$1")"; printf '#!/bin/sh\nexec %s "$@"\n' "$2" > "$1"; chmod +x "$1"; }
wrap "$G/venv/bin/python" "$PYABS"
if [ ! -e .venv/bin/python ]; then wrap .venv/bin/python "$PYABS"; wrap .venv/bin/condensekit "$BIN/condensekit"; fi
export ANCHORS_BUILD=$G ANCHORS_VENV=$G/venv ANCHORS_RESULTS=$RESULTS ANCHORS_DATA=$G/data CONDENSEKIT_DATA=$G/data
export CONDENSEKIT_CACHE=$G/cache CONDENSEKIT_REGISTRY=$G/registry
"$PY" - <<'PY' | tee "$RESULTS/machine.txt"
import torch, platform
print("torch", torch.__version__, "cuda", torch.version.cuda, "python", platform.python_version())
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (no CUDA)")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee -a "$RESULTS/machine.txt"

if [ -n "${QUICK:-}" ]; then METHODS=dm; IPCS=1; EPOCHS=2; RUNS=1; else METHODS=dm,datadam,dance; IPCS=10,1,50; EPOCHS=1000; RUNS=5; fi
echo "== 1. distillation side by side ($METHODS at IPC $IPCS)"
bash "$G/anchors/side_by_side.sh" "$ROOT" "$METHODS" "$IPCS"

echo "== 2. evaluation side by side ($RUNS runs x $EPOCHS epochs, CIFAR-10 IPC 10 random real set)"
"$PY" - "$G/data/cifar10-npz/train.npz" "$G/random-ipc10.pt" <<'PY'
import sys, numpy as np, torch
arrays = np.load(sys.argv[1]); rng = np.random.default_rng(0)
idx = np.concatenate([rng.choice(np.where(arrays["y"] == c)[0], 10, replace=False) for c in range(10)])
x = torch.tensor(arrays["x"][idx]).permute(0, 3, 1, 2).float() / 255
mean, std = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1), torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)
torch.save({"images": (x - mean) / std, "labels": torch.tensor(arrays["y"][idx]).long()}, sys.argv[2])
PY
bash "$G/anchors/eval_side_by_side.sh" "$ROOT" "$G/random-ipc10.pt" "$EPOCHS" "$RUNS"
echo "== 3. condensekit eval in bf16 (same set)"
"$PY" - "$G/random-ipc10.pt" "$G/set" <<'PY'
import os, sys, torch
o = torch.load(sys.argv[1]); os.makedirs(sys.argv[2], exist_ok=True)
torch.save(o["images"], f"{sys.argv[2]}/images.pt"); torch.save(o["labels"], f"{sys.argv[2]}/labels.pt")
PY
"$BIN/condensekit" import "$G/set" --name random-ipc10 --data cifar10 >/dev/null
for precision in fp32 bf16; do
  start=$(date +%s.%N)
  out=$("$BIN/condensekit" eval random-ipc10 --protocol dc --epochs "$EPOCHS" --runs "$RUNS" --precision "$precision" --json 2>/dev/null | tr -d '\n')
  echo "{\"precision\": \"$precision\", \"wall_s\": $("$PY" -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 2))" "$start"), \"report\": ${out:-null}}" | tee -a "$RESULTS/eval_precision.jsonl"
done
echo "== results in $RESULTS"; ls "$RESULTS"
