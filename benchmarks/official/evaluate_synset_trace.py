#!/usr/bin/env python
"""Step-for-step check of condensekit's ``dc`` trainer against DC's ``evaluate_synset``.

Both sides start from the same weights (DC's own ``get_network('ConvNet')``, copied into
condensekit's ``convnet``) and draw the same randomness, then the weights are compared after
every epoch. The official side is DC's released ``utils.epoch('train', ...)`` (with its
``DiffAugment``) inside ``evaluate_synset``'s ten-line outer loop (``Epoch + 1`` epochs, SGD
0.01 / momentum 0.9 / weight decay 5e-4, lr x0.1 and a new optimizer after epoch
``Epoch // 2 + 1``), its shuffle a ``torch.randperm`` on the global RNG. The condensekit side is
the real ``condensekit.evaluation.train.train_models`` with the ``dc`` protocol; only its
run's random source is swapped, at runtime, for the same global RNG and DC's ``DiffAugment``
(``--aug dc``) or nothing (``--aug none``), so both sides consume one stream in one order.
That checks everything around the augmentation: batching, the last partial batch, loss,
optimizer, schedule, momentum reset, initialization layout. The augmentation itself is
checked first, op family by op family: DC's ``rand_*`` functions and condensekit's DSA ops
applied to the same images with the same draws (DC's integers turned into the uniforms that
give them back).

Needs the anchors build (``shared/anchors/setup.sh``; ``ANCHORS_BUILD`` names it) and runs
in its venv with this checkout on ``PYTHONPATH``:

    ANCHORS_BUILD=~/.cache/condensekit-anchors PYTHONPATH=. \\
        ~/.cache/condensekit-anchors/venv/bin/python benchmarks/official/evaluate_synset_trace.py \\
        --per-class 40 --epochs 4

Prints one line per trained epoch with the largest weight difference, then a JSON line.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

ANCHORS = Path(__file__).resolve().parents[2].parent / "shared" / "anchors"
DC_MEAN, DC_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # DC utils.get_dataset, CIFAR10


def real_subset(npz: Path, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` train images of each CIFAR-10 class, normalized as DC does."""
    arrays = np.load(npz)
    idx = np.concatenate([np.where(arrays["y"] == c)[0][:per_class] for c in range(10)])
    x = torch.tensor(arrays["x"][idx]).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(DC_MEAN).view(1, 3, 1, 1)) / torch.tensor(DC_STD).view(1, 3, 1, 1)
    return x, torch.tensor(arrays["y"][idx]).long()


def ops_against_dc(utils: object, images: torch.Tensor) -> dict[str, float]:
    """Largest |DC op - condensekit op| per op family, on the same draws."""
    from condensekit import augment

    n, _, h, w = images.shape
    param = utils.ParamDiffAug()  # type: ignore[attr-defined]
    param.Siamese, param.latestseed = False, -1  # evaluate_synset's DiffAugment(seed=-1)
    shift, cut = int(h * param.ratio_crop_pad + 0.5), int(h * param.ratio_cutout + 0.5)

    def bins(ints: torch.Tensor, low: int, high: int) -> torch.Tensor:  # the uniform giving each integer back
        return (ints.float().flatten() - low + 0.5) / (high - low + 1)

    # family: (DC functions in order, this family's draws replayed as condensekit's value columns)
    families = {
        "flip": (["rand_flip"], lambda: {"flip": torch.rand(n)}),
        "color": (
            ["rand_brightness", "rand_saturation", "rand_contrast"],
            lambda: {"brightness": torch.rand(n), "saturation": torch.rand(n), "contrast": torch.rand(n)},
        ),
        "crop": (
            ["rand_crop"],
            lambda: {
                "crop_x": bins(torch.randint(-shift, shift + 1, (n, 1, 1)), -shift, shift),
                "crop_y": bins(torch.randint(-shift, shift + 1, (n, 1, 1)), -shift, shift),
            },
        ),
        "cutout": (
            ["rand_cutout"],
            lambda: {
                "cutout_x": bins(torch.randint(0, h + (1 - cut % 2), (n, 1, 1)), 0, h - cut % 2),
                "cutout_y": bins(torch.randint(0, w + (1 - cut % 2), (n, 1, 1)), 0, w - cut % 2),
            },
        ),
        "scale": (["rand_scale"], lambda: {"scale_x": torch.rand(n), "scale_y": torch.rand(n)}),
        "rotate": (["rand_rotate"], lambda: {"rotate": torch.rand(n)}),
    }
    diffs = {}
    for family, (functions, replay) in families.items():
        torch.manual_seed(0)
        official = images
        for name in functions:
            official = getattr(utils, name)(official, param)
        torch.manual_seed(0)
        values = torch.zeros(n, len(augment.VALUES))
        for column, uniforms in replay().items():
            values[:, augment.VALUES.index(column)] = uniforms
        mine = augment._APPLY[family](images, values, augment.DSAConfig())
        diffs[family] = float((official - mine).abs().max())
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=40, help="images per class (40: two batches of 256 + 144)")
    parser.add_argument("--epochs", type=int, default=4, help="evaluate_synset's Epoch (Epoch + 1 are trained)")
    parser.add_argument("--aug", choices=("dc", "none"), default="dc", help="DC's DiffAugment on both sides, or none")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--anchors", type=Path, default=Path(os.environ.get("ANCHORS_DIR", ANCHORS)))
    parser.add_argument(
        "--npz",
        type=Path,
        default=Path(os.environ.get("CONDENSEKIT_DATA", ANCHORS.parent / "data")) / "cifar10-npz" / "train.npz",
    )
    args = parser.parse_args()

    sys.path.insert(0, str(args.anchors))
    import anchors_common  # the anchors' runtime shims; imports DC's utils.py unmodified on disk

    utils, _ = anchors_common.import_dc_utils_siamese_fix()
    from condensekit.backbones import create_backbone
    from condensekit.evaluation import train
    from condensekit.evaluation.protocols import PROTOCOLS

    x, y = real_subset(args.npz, args.per_class)
    ops = ops_against_dc(utils, x[:64])
    for family, diff in ops.items():
        print(f"DSA {family}: max |DC - condensekit| = {diff:.3g}")
    dc_args = argparse.Namespace(
        device="cpu",
        dsa=args.aug == "dc",
        dsa_param=utils.ParamDiffAug(),
        dc_aug_param=None,
        dsa_strategy="color_crop_cutout_flip_scale_rotate",
    )
    official_net = utils.get_network("ConvNet", 3, 10, (32, 32))
    ours = create_backbone("convnet", channels=3, num_classes=10, resolution=32)
    with torch.no_grad():
        for mine, theirs in zip(ours.state_dict().values(), official_net.state_dict().values(), strict=True):
            mine.copy_(theirs)  # same layout, entry by entry (copy_ fails on a shape mismatch)

    # Official: evaluate_synset's outer loop around DC's epoch().
    torch.manual_seed(args.seed)
    lr = 0.01
    optimizer = torch.optim.SGD(official_net.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    criterion = torch.nn.CrossEntropyLoss()
    official = []
    for ep in range(args.epochs + 1):
        perm = torch.randperm(len(y))
        loader = torch.utils.data.DataLoader(
            utils.TensorDataset(x[perm], y[perm]), batch_size=256, shuffle=False, generator=torch.Generator()
        )
        utils.epoch("train", loader, official_net, optimizer, criterion, dc_args, aug=True)
        official.append(copy.deepcopy(official_net.state_dict()))
        if ep in [args.epochs // 2 + 1]:
            lr *= 0.1
            optimizer = torch.optim.SGD(official_net.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)

    # condensekit: the real trainer, its run drawing from the global RNG and DC's DiffAugment.
    class DCDiffAugment:
        def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            return utils.DiffAugment(batch, dc_args.dsa_strategy, param=dc_args.dsa_param)

    run_init = train._Run.__init__

    def one_stream(self: train._Run, seed: int, protocol: object) -> None:
        run_init(self, seed, protocol)
        torch.manual_seed(seed)
        self.generator = torch.default_generator
        self.augment = DCDiffAugment() if args.aug == "dc" else None

    train._Run.__init__ = one_stream  # type: ignore[method-assign]
    protocol = dataclasses.replace(PROTOCOLS["dc"], epochs=args.epochs)
    ours_by_epoch = []
    train.train_models(
        [ours],
        [args.seed],
        train.TensorBatches(x, y),
        protocol,
        torch.device("cpu"),
        lambda _run, _epoch, _loss: ours_by_epoch.append(copy.deepcopy(ours.state_dict())),
    )
    diffs = []
    for ep, (theirs, mine) in enumerate(zip(official, ours_by_epoch, strict=True)):
        diffs.append(max(float((a - b).abs().max()) for a, b in zip(theirs.values(), mine.values(), strict=True)))
        print(f"epoch {ep}: max |w_official - w_condensekit| = {diffs[-1]:.3g}")
    print(
        json.dumps(
            {
                "images": len(y),
                "batches_per_epoch": -(-len(y) // 256),
                "trained_epochs": len(diffs),
                "aug": args.aug,
                "dsa_op_max_diff": ops,
                "max_weight_diff_by_epoch": diffs,
                "dc_commit": anchors_common.repo_commit("dc"),
            }
        )
    )


if __name__ == "__main__":
    main()
