#!/usr/bin/env bash
# Second pass over an existing fidelity registry (benchmarks/run_fidelity.sh): re-distills
# DataDAM `tuned` with the current code, distills the `official` preset, and brings every
# set to 3 evaluation runs (new runs use --seed 1, so they are new networks).
#   bash benchmarks/run_fidelity_more.sh [OUT_DIR]
set -euo pipefail
out="${1:-benchmarks/out/fidelity}"
export CONDENSEKIT_REGISTRY="$out/registry" OMP_NUM_THREADS=1
ck="${CK:-condensekit}"
its="${ITERATIONS:-200}"; epochs="${EPOCHS:-300}"
distill() {  # name preset
  /usr/bin/time -f "$1 distill wall %e s" $ck distill datadam --data cifar10 --ipc 10 --name "fid-$1" \
    --checkpoint-every 0 --iterations "$its" --preset "$2" >> "$out/distill-more.log" 2>&1
}
evaluate() {  # ref runs seed tag
  $ck eval "$1" --epochs "$epochs" --runs "$2" --seed "$3" --json > "$out/eval-$4-s$3.json" 2>> "$out/eval-more.log" \
    || echo "$1 eval FAILED" >> "$out/eval-more.log"
}
distill datadam-official official
evaluate fid-datadam-official:v1 3 0 datadam-official
distill datadam-tuned tuned
evaluate fid-datadam-tuned:v2 3 0 datadam-tuned-v2
evaluate fid-random:v1 1 1 random
evaluate fid-dm:v1 1 1 dm
evaluate fid-datadam-tuned:v1 1 1 datadam-tuned
evaluate fid-datadam-paper:v1 1 1 datadam-paper
echo done > "$out/more.done"
