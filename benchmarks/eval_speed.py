"""Where evaluation time goes: DSA, a training step, and the test pass, per image.

    python benchmarks/eval_speed.py [--arch convnet] [--batch 256] [--res 32] [--device auto] [--repeat 5]

Prints milliseconds per call and images per second for: per-sample DSA on one batch (modes
dsa and idc), one SGD step with DSA (forward, backward, update), and inference on batches of
1024 test-sized images, then estimates one run of the dc protocol on CIFAR-10 (1000 epochs of
``N / batch`` steps plus ``10000 / 1024`` test batches).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch

from condensekit.augment import DSA
from condensekit.backbones import create_backbone
from condensekit.runtime import select_device


def timed(fn: Callable[[], object], repeat: int, device: torch.device) -> float:
    """Seconds per call (after one warm-up call)."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="convnet")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--res", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

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
        run_s = 1000 * n / args.batch * step_s + math.ceil(10000 / 1024) * test_s
        print(f"  estimate, dc protocol (1000 epochs), CIFAR-10 IPC {ipc:2d}: {run_s / 60:7.1f} min per run")


if __name__ == "__main__":
    main()
