#!/usr/bin/env bash
# `make demo`: the main job on the embedded dataset, no data root and no network needed.
# A CPU-sized budget (a few minutes on 2 cores): the two baselines, evaluated and compared.
set -euo pipefail
ck="${1:-condensekit}"
"$ck" list methods
"$ck" distill random --data cifar10-mini --ipc 10 --name demo-random
"$ck" distill dm --data cifar10-mini --ipc 10 --iterations 60 --batch-real 64 --name demo-dm
"$ck" eval demo-random --runs 1 --epochs 150
"$ck" eval demo-dm --runs 1 --epochs 150
"$ck" compare demo-random demo-dm
