#!/usr/bin/env bash
# Fidelity at the anchors' budget on 2 cores: one single-threaded process distills the sets
# one after another while a second single-threaded process evaluates each set as it lands
# (two 1-thread jobs use 2 cores better than one 2-thread job on these small batches).
#   bash benchmarks/run_fidelity.sh [OUT_DIR]
# Environment: ITERATIONS, DANCE_ITERATIONS, EPOCHS, RUNS, EVAL_SEED, and ONLY (space-separated
# job names, e.g. ONLY="dance datadam-official") to run a subset into an existing OUT_DIR.
set -euo pipefail
out="${1:-benchmarks/out/fidelity}"
mkdir -p "$out"
export CONDENSEKIT_REGISTRY="$out/registry" OMP_NUM_THREADS=1
ck="${CK:-condensekit}"
its="${ITERATIONS:-200}"; epochs="${EPOCHS:-300}"; runs="${RUNS:-2}"
jobs=(
  "random|random|"
  "dm|dm|--iterations $its --batch-real 256"
  "datadam|datadam-tuned|--iterations $its --preset tuned"
  "datadam|datadam-paper|--iterations $its --preset paper"
  "datadam|datadam-official|--iterations $its --preset official"
  "dance|dance|--iterations ${DANCE_ITERATIONS:-150} --num-experts 2 --expert-epochs 2 --factor 2"
)
if [ -n "${ONLY:-}" ]; then
  selected=()
  for job in "${jobs[@]}"; do
    IFS='|' read -r _ name _ <<< "$job"
    [[ " $ONLY " == *" $name "* ]] && selected+=("$job")
  done
  jobs=("${selected[@]}")
fi
rm -f "$out/distill.done" "$out/all.done"
(
  for job in "${jobs[@]}"; do
    IFS='|' read -r method name opts <<< "$job"
    /usr/bin/time -f "$name distill wall %e s" $ck distill "$method" --data cifar10 --ipc 10 --name "fid-$name" \
      --checkpoint-every 0 --compile $opts >> "$out/distill.log" 2>&1 || echo "$name distill FAILED" >> "$out/distill.log"
  done
  touch "$out/distill.done"
) &
for job in "${jobs[@]}"; do
  IFS='|' read -r method name opts <<< "$job"
  until $ck show "fid-$name" --json > /dev/null 2>&1; do
    if [ -f "$out/distill.done" ] && ! $ck show "fid-$name" --json > /dev/null 2>&1; then break; fi
    sleep 20
  done
  $ck show "fid-$name" --json > /dev/null 2>&1 || { echo "$name: no set" >> "$out/eval.log"; continue; }
  $ck eval "fid-$name" --epochs "$epochs" --runs "$runs" --seed "${EVAL_SEED:-0}" --json > "$out/eval-$name-s${EVAL_SEED:-0}.json" 2>> "$out/eval.log" \
    || echo "$name eval FAILED" >> "$out/eval.log"
done
wait
echo done > "$out/all.done"
