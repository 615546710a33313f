#!/usr/bin/env bash
# `make demo`: the main job on the embedded dataset, no data root and no network needed.
set -euo pipefail
ck="${1:-condensekit}"
"$ck" list methods
"$ck" distill random --data cifar10-mini --ipc 10 --name demo-random
"$ck" distill dm --data cifar10-mini --ipc 10 --iterations 100 --batch-real 128 --name demo-dm
"$ck" eval demo-random --runs 2 --epochs 300
"$ck" eval demo-dm --runs 2 --epochs 300
"$ck" compare demo-random demo-dm
