#!/usr/bin/env bash
# `make demo`: the four seed methods on the embedded dataset, no data root and no network needed.
# random, dm, datadam and dance (with one small expert trained here) distill cifar10-mini at
# IPC 10 on a CPU-sized budget, are evaluated with one protocol and compared, and each set's
# image grid is written into the registry folder (grids/). At these budgets every method beat
# random in the measured run; the time announced below is that run's wall time (install
# excluded): re-measure and update it whenever a budget changes.
set -euo pipefail
ck="${1:-condensekit}"
registry="${CONDENSEKIT_REGISTRY:-registry}"
echo "condensekit demo: about 3.5 minutes on 2 CPU cores (measured 3 min 20 s and 3 min 23 s in two runs with the cores otherwise idle; longer when other jobs share them)"
start=$SECONDS
# One evaluation budget for every set: 1 network, 60 epochs of the dc protocol. dance stores
# 100 images that decode to 400 (factor 2), so its evaluation trains on 400 and takes longest.
eval_opts=(--runs 1 --epochs 60)
"$ck" list methods
"$ck" distill random --data cifar10-mini --ipc 10 --name demo-random
"$ck" distill dm --data cifar10-mini --ipc 10 --iterations 40 --batch-real 64 --name demo-dm
"$ck" distill datadam --data cifar10-mini --ipc 10 --iterations 30 --batch-real 64 --name demo-datadam
# DANCE matches features through experts (networks trained on the real data): one, briefly.
"$ck" experts train --data cifar10-mini --num 1 --epochs 2
"$ck" distill dance --data cifar10-mini --ipc 10 --iterations 10 --batch-real 64 --name demo-dance
sets=(demo-random demo-dm demo-datadam demo-dance)
for set in "${sets[@]}"; do
    "$ck" eval "$set" "${eval_opts[@]}"
done
"$ck" compare "${sets[@]}"
for set in "${sets[@]}"; do
    "$ck" export "$set" --grid "$registry/grids/$set.png"
done
echo "condensekit demo: done in $((SECONDS - start)) s; sets and grids under $registry"
