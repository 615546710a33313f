"""Time the official DataDAM and DM loops' structure next to condensekit's, in one run.

    python benchmarks/reference_loops.py [--methods datadam,dm,dance] [--ipc 10] [--iterations 8]
        [--rounds 2] [--compile]

``shared/notes/anchors.md`` times the official loops on these machines, but across sessions on
shared hosts the figures drift by up to 2x, so a speed claim must be a ratio timed in one run.
The official code is not on this machine; this script rebuilds each official iteration from
the implementation notes (``shared/notes/datadam.md`` A.2-A.6, B) with the same tensor work:

- DataDAM (released settings): a fresh batch-norm ConvNet-3 in NCHW, train mode, frozen; per
  class a shuffled real batch of 64 and the class's synthetic images, each augmented with the
  class's seed (one DSA call per class and side); one forward over all real images and one over
  all synthetic images, with forward hooks cloning every ReLU output; the attention of every
  block but the last (sum over channels of |F|, L2-normalized), the summed squared difference of
  per-class means (``MSE_B``) x100, plus 100 x 0.01 x the same on the embeddings; SGD step.
- DM: a fresh instance-norm ConvNet-3; per class a forward of 256 real and the class's synthetic
  images, loss summed over classes; SGD step.
- DANCE (``shared/notes/dance.md`` 1.5): both expert checkpoints re-read from disk, the middle
  encoder interpolated, the images clamped; per class one matching step (128 real images in
  [0, 1], the class's decoded factor-2 images, one seeded augmentation); then per class one
  cross-entropy step through the trained expert.

Each side runs in a fresh process (condensekit's process-wide allocator tuning must not reach
the reference), alternating reference and condensekit ``--rounds`` times; the first iteration
of each process is warm-up and the median of the rest is reported, then the ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

STRATEGY = "color_crop_cutout_flip_scale_rotate"


def _setup(ipc: int, lr: float, space: str = "normalized"):
    """CIFAR-10 train as one float tensor (as the official code keeps it), the first ``ipc``
    images per class as the synthetic set, and its SGD optimizer (momentum 0.5)."""
    from condensekit.data import load_dataset

    real = load_dataset("cifar10", "train")
    images_all = real.as_float(real.images, space=space)
    classes = real.info.num_classes
    syn = torch.cat([images_all[real.class_slice(c)][:ipc] for c in range(classes)]).clone().requires_grad_(True)
    return real, images_all, classes, syn, torch.optim.SGD([syn], lr=lr, momentum=0.5)


def _class_batch(real, images_all: torch.Tensor, c: int, n: int) -> torch.Tensor:
    """The official ``get_images``: ``n`` images of class ``c`` in a fresh random order."""
    return images_all[torch.randperm(real.class_count(c))[:n] + real.class_slice(c).start]


def _augment(dsa, x: torch.Tensor, seed: int) -> torch.Tensor:
    """One augmentation drawn from ``seed`` for the whole batch, as the official code seeds
    both sides of a class from the clock."""
    params = dsa.sample(1, torch.Generator().manual_seed(seed))
    return dsa.apply(x, params, torch.zeros(x.shape[0], dtype=torch.long))


def _clock_seed() -> int:
    return int(time.time() * 1000) % 100000


def _fresh_frozen(backbone: str, classes: int) -> torch.nn.Module:
    """A fresh network, train mode, no weight gradients: what ``get_network`` plus the loop give.

    Not ``condensekit.methods.common.frozen``: that also makes the weights channels_last, one
    of the speed-ups this benchmark measures, and the official code runs NCHW."""
    from condensekit.backbones import create_backbone

    net = create_backbone(backbone, channels=3, num_classes=classes, resolution=32)
    net.train()
    for p in net.parameters():
        p.requires_grad = False
    return net


def reference_datadam(ipc: int, iterations: int, batch_real: int = 64) -> list[float]:
    from condensekit.augment import DSA

    real, images_all, classes, syn, optimizer = _setup(ipc, lr=1.0)
    dsa = DSA(STRATEGY)

    def attention(feature: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(feature.abs().sum(dim=1).flatten(1), p=2, dim=1)

    def mse_b(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = a.cpu(), b.cpu()  # the released error() moves both sides to the host
        return (a.reshape(classes, -1, a.shape[-1]).mean(1) - b.reshape(classes, -1, b.shape[-1]).mean(1)).pow(2).sum()

    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        net = _fresh_frozen("convnet-bn", classes)
        captured: list[torch.Tensor] = []
        hooks = [
            m.register_forward_hook(lambda _m, _i, out, store=captured: store.append(out.clone()))
            for m in net.modules()
            if isinstance(m, torch.nn.ReLU)
        ]
        real_batches, syn_batches = [], []
        for c in range(classes):
            seed = _clock_seed()
            real_batches.append(_augment(dsa, _class_batch(real, images_all, c, batch_real), seed))
            syn_batches.append(_augment(dsa, syn[c * ipc : (c + 1) * ipc], seed))
        _, real_embedding = net.intermediates(torch.cat(real_batches))
        real_maps = list(captured)
        captured.clear()
        _, syn_embedding = net.intermediates(torch.cat(syn_batches))
        syn_maps = list(captured)
        for h in hooks:
            h.remove()
        loss = torch.zeros(())
        for layer in range(len(real_maps) - 1):
            real_att = attention(real_maps[layer]).flatten(1).detach()
            loss = loss + 100 * mse_b(real_att, attention(syn_maps[layer]).flatten(1))
        loss = loss + 100 * 0.01 * mse_b(real_embedding.detach(), syn_embedding)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def reference_dm(ipc: int, iterations: int, batch_real: int = 256) -> list[float]:
    from condensekit.augment import DSA

    real, images_all, classes, syn, optimizer = _setup(ipc, lr=1.0)
    dsa = DSA(STRATEGY)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        net = _fresh_frozen("convnet", classes)
        loss = torch.zeros(())
        for c in range(classes):
            seed = _clock_seed()
            img_real = _augment(dsa, _class_batch(real, images_all, c, batch_real), seed)
            img_syn = _augment(dsa, syn[c * ipc : (c + 1) * ipc], seed)
            output_real = net.embed(img_real).detach()
            output_syn = net.embed(img_syn)
            loss = loss + ((output_real.mean(0) - output_syn.mean(0)) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def reference_dance(ipc: int, iterations: int, batch_real: int = 128, factor: int = 2, experts: int = 2) -> list[float]:
    import tempfile

    import torch.nn.functional as F

    from condensekit.augment import DSA
    from condensekit.backbones import create_backbone
    from condensekit.synthetic import decode_multiformation

    real, images_all, classes, syn, optimizer = _setup(ipc, lr=0.01 * ipc, space="unit")  # DANCE: [0, 1] pixels
    aug = DSA("color_crop_cutout", mode="idc")
    folder = tempfile.mkdtemp(prefix="dance-reference-")
    for k in range(experts):  # expert weight values do not change the cost of an iteration
        for kind in ("init", "trained"):
            state = create_backbone("convnet", channels=3, num_classes=classes, resolution=32, seed=10 * k).state_dict()
            torch.save(state, f"{folder}/premodel{k}_{kind}.pth.tar")
    model_init, model_final, model_mid = (_fresh_frozen("convnet", classes) for _ in range(3))

    def augmented(x: torch.Tensor, seed: int) -> torch.Tensor:
        return _augment(aug, real.info.normalize(x), seed)  # DANCE normalizes inside its augmentation

    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        k = int(torch.randint(experts, (1,)))
        model_init.load_state_dict(torch.load(f"{folder}/premodel{k}_init.pth.tar"))  # re-read every iteration
        model_final.load_state_dict(torch.load(f"{folder}/premodel{k}_trained.pth.tar"))
        coefficient = float(torch.rand(1))
        with torch.no_grad():
            for mid, a, b in zip(
                model_mid.parameters(), model_init.parameters(), model_final.parameters(), strict=True
            ):
                mid.copy_(coefficient * a + (1 - coefficient) * b)
            syn.clamp_(0, 1)
        for c in range(classes):  # one optimizer step per class
            x_syn = decode_multiformation(syn[c * ipc : (c + 1) * ipc], factor)
            seed = _clock_seed()
            f_real = model_mid.embed(augmented(_class_batch(real, images_all, c, batch_real), seed)).detach()
            f_syn = model_mid.embed(augmented(x_syn, seed))
            loss = ((f_real.mean(0) - f_syn.mean(0)) ** 2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        for c in range(classes):  # calibration: one step per class through the trained expert
            x_syn = decode_multiformation(syn[c * ipc : (c + 1) * ipc], factor)
            logits = model_final(augmented(x_syn, _clock_seed()))
            loss = F.cross_entropy(logits, torch.full((x_syn.shape[0],), c, dtype=torch.long))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return times


REFERENCES = {"datadam": reference_datadam, "dm": reference_dm, "dance": reference_dance}
#: condensekit's side at the reference's settings (speed.py measures it).
SETTINGS = {
    "datadam": {"preset": "official", "batch_real": 64},
    "dm": {"batch_real": 256},
    "dance": {"batch_real": 128, "factor": 2, "num_experts": 2},
}


def _one(side: str, method: str, ipc: int, iterations: int, compile: bool) -> float:
    if side == "reference":
        times = REFERENCES[method](ipc, iterations)[1:]
    else:
        sys.path.insert(0, os.path.dirname(__file__))
        from speed import measure

        row = measure(method, ipc, iterations, dict(SETTINGS[method]), compile=compile)
        return row["s_per_iteration"]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="datadam,dm,dance")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="condensekit side with torch.compile")
    parser.add_argument("--one", nargs=2, metavar=("SIDE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.one[0], args.one[1], args.ipc, args.iterations, args.compile)))
        return
    threads = torch.get_num_threads()
    for method in args.methods.split(","):
        results: dict[str, list[float]] = {"reference": [], "condensekit": []}
        for _ in range(args.rounds):
            for side, times in results.items():
                command = [
                    sys.executable,
                    __file__,
                    "--one",
                    side,
                    method,
                    "--ipc",
                    str(args.ipc),
                    "--iterations",
                    str(args.iterations),
                ] + (["--compile"] if args.compile else [])
                out = subprocess.run(command, check=False, capture_output=True, text=True, env=os.environ)
                if out.returncode != 0:
                    sys.exit(f"{side} {method} failed: {out.stderr.strip().splitlines()[-1]}")
                times.append(json.loads(out.stdout.strip().splitlines()[-1]))
        ref, ours = statistics.median(results["reference"]), statistics.median(results["condensekit"])
        print(
            f"{method:8s} ipc {args.ipc:3d}  reference {ref:6.3f} s/it  condensekit {ours:6.3f} s/it  "
            f"ratio {ours / ref:5.2f}  (threads {threads}, compile {args.compile}; per round: reference "
            f"{[round(t, 3) for t in results['reference']]}, condensekit "
            f"{[round(t, 3) for t in results['condensekit']]})",
            flush=True,
        )


if __name__ == "__main__":
    main()
