#!/usr/bin/env bash
# Packs what benchmarks/gpu_check.sh needs on a GPU machine that reaches nothing outside it, into
# .gpu/ at the repository root (git-ignored; carried to the device with the working tree):
#   .gpu/src/<repo>/   the official DatasetCondensation, DataDAM and DANCE code (*.py only), from the
#                      anchors build (run shared/anchors/setup.sh first; ANCHORS_BUILD names it)
#   .gpu/anchors/      the anchors harness scripts (shared/anchors: glue only, no official code)
#   .gpu/data/cifar10-npz/{train,test}.npz   CIFAR-10: 300 train images per class, the full test split
#   .gpu/whl/          wheels the device image lacks (kornia, kornia_rs, efficientnet_pytorch, tomli_w),
#                      for its Python (3.12, manylinux x86-64)
# About 60 MB in all, under the device tool's 64 MiB for the working tree.
#   bash benchmarks/gpu_prepare.sh            (from the repository root)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ANCHORS=${ANCHORS_DIR:-$ROOT/../shared/anchors}
DATA=${CONDENSEKIT_DATA:-$ROOT/../shared/data}
if [ -z "${ANCHORS_BUILD:-}" ]; then
  if [ -d "$ANCHORS/_build/src" ]; then ANCHORS_BUILD=$ANCHORS/_build; else ANCHORS_BUILD=$HOME/.cache/condensekit-anchors; fi
fi
G=$ROOT/.gpu
[ -d "$ANCHORS_BUILD/src/DatasetCondensation" ] || { echo "no official sources in $ANCHORS_BUILD/src: run $ANCHORS/setup.sh first" >&2; exit 1; }
grep -qx '/.gpu/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >> "$ROOT/.git/info/exclude"
rm -rf "$G" && mkdir -p "$G/src" "$G/anchors" "$G/data/cifar10-npz" "$G/whl"
for repo in DatasetCondensation DataDAM DANCE; do
  (cd "$ANCHORS_BUILD/src/$repo" && find . \( -name '*.py' -o -name '.anchors_commit' \) -print0 | tar --null -T - -cf -) | (mkdir -p "$G/src/$repo" && tar -xf - -C "$G/src/$repo")
done
cp "$ANCHORS"/*.py "$ANCHORS"/*.sh "$G/anchors/"
python3 - "$DATA/cifar10-npz" "$G/data/cifar10-npz" <<'PY'
import sys, numpy as np
src, dst = sys.argv[1:]
train = np.load(f"{src}/train.npz")
keep = np.concatenate([np.where(train["y"] == c)[0][:300] for c in range(10)])
np.savez(f"{dst}/train.npz", x=train["x"][keep], y=train["y"][keep])
test = np.load(f"{src}/test.npz")
np.savez(f"{dst}/test.npz", x=test["x"], y=test["y"])
PY
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$G/whl" kornia==0.9.0 kornia-rs==0.2.0 efficientnet-pytorch==0.3.0 tomli-w 2>&1 | grep -v '^WARNING' || true
du -sh "$G"; ls "$G/whl"
