"""Where evaluation time goes: DSA, a training step, and the test pass, per image; and whole
evaluations, one after another against one batched ensemble, fp32 against bf16.

    python benchmarks/eval_speed.py [--arch convnet] [--batch 256] [--res 32] [--device auto] [--repeat 5]
    python benchmarks/eval_speed.py --whole [--ipc 10,50] [--runs 1,3,5] [--epochs 300] [--precision fp32,bf16]

``--whole`` times ``condensekit.evaluate`` (dc protocol, ConvNet-3, the 10,000 CIFAR-10 test
images) on a set of real CIFAR-10 training images, for each IPC, run count, precision and path
(``sequential`` = 1 run at a time, ``batched`` = every run in one stacked ensemble), and prints
seconds, training images per second and the fraction of the fp32 FLOP floor: the FLOPs of the
whole evaluation (counted by ``torch.utils.flop_counter`` on one step and one test batch) over
the peak this machine sustains (timed on a large matmul and a ConvNet-sized convolution).

Prints milliseconds per call and images per second for: per-sample DSA on one batch (modes
dsa and idc), one SGD step with DSA (forward, backward, update), and inference on batches of
1024 test-sized images, then estimates one run of the dc protocol on CIFAR-10 (1000 epochs of
``N / batch`` steps plus ``10000 / 1024`` test batches).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from flops import peak_gflops, timed  # benchmarks/flops.py: this script's folder is on sys.path

from condensekit.augment import DSA
from condensekit.backbones import create_backbone
from condensekit.runtime import select_device


def evaluation_flops(n: int, epochs: int, batch: int, test_images: int, device: torch.device) -> float:
    """FLOPs of one dc run: ``epochs * n`` training images (forward and backward) plus one pass
    over the test split, counted on one batch of each."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_backbone("convnet", channels=3, num_classes=10, resolution=32, seed=0).to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.cross_entropy(model(x), torch.zeros(batch, dtype=torch.long, device=device)).backward()
    train_per_image = counter.get_total_flops() / batch
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    test_per_image = counter.get_total_flops() / batch
    return epochs * n * train_per_image + test_images * test_per_image


def whole(args: argparse.Namespace) -> None:
    import numpy as np

    from condensekit.data import dataset_info, load_dataset
    from condensekit.evaluation import evaluate
    from condensekit.evaluation.protocols import get_protocol
    from condensekit.synthetic import SyntheticSet

    device = select_device(args.device)
    peak = peak_gflops(device)
    info = dataset_info("cifar10")
    real = load_dataset("cifar10", "train")
    # dc --epochs E trains DC's E + 1 epochs: the floor and the rate count the epochs trained.
    trained = get_protocol("dc").with_overrides(epochs=args.epochs).trained_epochs
    print(
        f"fp32 peak {peak:.0f} GFLOP/s on {device}, {torch.get_num_threads()} threads; "
        f"dc --epochs {args.epochs} ({trained} trained)"
    )
    for ipc in (int(v) for v in args.ipc.split(",")):
        gens = [torch.Generator().manual_seed(c) for c in range(10)]
        images = real.sample(list(range(10)), ipc, gens)
        synset = SyntheticSet(images, torch.arange(10).repeat_interleave(ipc), metadata=info.as_metadata())
        for runs in (int(v) for v in args.runs.split(",")):
            floor_s = runs * evaluation_flops(10 * ipc, trained, 256, 10000, device) / (peak * 1e9)
            for precision in args.precision.split(","):
                for path, parallel in (("sequential", 1), ("batched", runs)):
                    if path not in args.paths.split(",") or (path == "batched" and runs == 1):
                        continue
                    start = time.perf_counter()
                    report = evaluate(
                        synset,
                        runs=runs,
                        epochs=args.epochs,
                        device=device,
                        precision=precision,
                        max_parallel_runs=parallel,
                    )
                    seconds = time.perf_counter() - start
                    accs = report.results[0].accuracies
                    print(f"    runs: {', '.join(f'{a:.2f}' for a in accs)}")
                    print(
                        f"  IPC {ipc:2d} runs {runs} {precision} {path:10s} {seconds:8.1f} s  "
                        f"{runs * trained * 10 * ipc / seconds:7.0f} train images/s  "
                        f"floor {floor_s:6.1f} s ({seconds / floor_s:4.2f}x)  acc {np.mean(accs):.2f}"
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whole", action="store_true", help="time whole evaluations (see above)")
    parser.add_argument("--ipc", default="10,50")
    parser.add_argument("--runs", default="1,3,5")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--precision", default="fp32,bf16")
    parser.add_argument("--paths", default="sequential,batched", help="which of sequential,batched to time")
    parser.add_argument("--arch", default="convnet")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--res", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.whole:
        whole(args)
        return

    device = select_device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.channels, args.res, args.res, device=device)
    y = torch.randint(10, (args.batch,), device=device)
    model = create_backbone(args.arch, channels=args.channels, num_classes=10, resolution=args.res, seed=0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    dsa = DSA()

    def step() -> None:
        with torch.no_grad():
            xa = dsa(x, g)
        loss = torch.nn.functional.cross_entropy(model(xa), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    test_x = torch.randn(1024, args.channels, args.res, args.res, device=device)

    def infer() -> None:
        with torch.no_grad():
            model.eval()(test_x)
        model.train()

    rows = [
        ("DSA mode dsa, one batch", timed(lambda: dsa(x, g), args.repeat, device), args.batch),
        (
            "DSA mode idc, one batch",
            timed(lambda: DSA("color_crop_flip_scale_rotate", "idc")(x, g), args.repeat, device),
            args.batch,
        ),
        ("SGD step with DSA", timed(step, args.repeat, device), args.batch),
        ("inference, 1024 images", timed(infer, max(1, args.repeat // 2), device), 1024),
    ]
    print(
        f"{args.arch} {args.channels}x{args.res}x{args.res}, batch {args.batch}, {device}, "
        f"{torch.get_num_threads()} threads"
    )
    for name, seconds, images in rows:
        print(f"  {name:28s} {seconds * 1e3:9.1f} ms  {images / seconds:9.0f} images/s")
    step_s, test_s = rows[2][1], rows[3][1]
    for ipc in (1, 10, 50):
        n = 10 * ipc
        # A step's cost scales with its images: one epoch ~ n / batch steps of this size.
        run_s = 1001 * n / args.batch * step_s + math.ceil(10000 / 1024) * test_s
        print(f"  estimate, dc --epochs 1000 (1001 trained), CIFAR-10 IPC {ipc:2d}: {run_s / 60:7.1f} min per run")


if __name__ == "__main__":
    main()
