"""Time the official DataDAM and DM loops' structure next to condensekit's, in one run.

    python benchmarks/reference_loops.py [--methods datadam,dm] [--ipc 10] [--iterations 8] [--rounds 2]

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

STRATEGY = "color_crop_cutout_flip_scale_rotate"


def _real_data():
    from condensekit.data import load_dataset

    real = load_dataset("cifar10", "train")
    return real, real.as_float(real.images)  # the official code keeps all images as floats


def reference_datadam(ipc: int, iterations: int, batch_real: int = 64) -> list[float]:
    import torch

    from condensekit.augment import DSA
    from condensekit.backbones import create_backbone

    real, images_all = _real_data()
    classes = real.info.num_classes
    dsa = DSA(STRATEGY)
    syn = torch.cat([images_all[real.class_slice(c)][:ipc] for c in range(classes)]).clone().requires_grad_(True)
    optimizer = torch.optim.SGD([syn], lr=1.0, momentum=0.5)

    def attention(feature: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(feature.abs().sum(dim=1).flatten(1), p=2, dim=1)

    def mse_b(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = a.cpu(), b.cpu()  # the released error() moves both sides to the host
        return (a.reshape(classes, -1, a.shape[-1]).mean(1) - b.reshape(classes, -1, b.shape[-1]).mean(1)).pow(2).sum()

    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        net = create_backbone("convnet-bn", channels=3, num_classes=classes, resolution=32)
        net.train()
        for p in net.parameters():
            p.requires_grad = False
        captured: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda _m, _i, out, store=captured: store.append(out.clone()))
                 for m in net.modules() if isinstance(m, torch.nn.ReLU)]
        real_batches, syn_batches = [], []
        for c in range(classes):
            index = torch.randperm(real.class_count(c))[:batch_real] + real.class_slice(c).start
            generator = torch.Generator().manual_seed(int(time.time() * 1000) % 100000)
            params = dsa.sample(1, generator)
            groups_real = torch.zeros(batch_real, dtype=torch.long)
            groups_syn = torch.zeros(ipc, dtype=torch.long)
            real_batches.append(dsa.apply(images_all[index], params, groups_real))
            syn_batches.append(dsa.apply(syn[c * ipc:(c + 1) * ipc], params, groups_syn))
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
    import torch

    from condensekit.augment import DSA
    from condensekit.backbones import create_backbone

    real, images_all = _real_data()
    classes = real.info.num_classes
    dsa = DSA(STRATEGY)
    syn = torch.cat([images_all[real.class_slice(c)][:ipc] for c in range(classes)]).clone().requires_grad_(True)
    optimizer = torch.optim.SGD([syn], lr=1.0, momentum=0.5)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        net = create_backbone("convnet", channels=3, num_classes=classes, resolution=32)
        net.train()
        for p in net.parameters():
            p.requires_grad = False
        loss = torch.zeros(())
        for c in range(classes):
            index = torch.randperm(real.class_count(c))[:batch_real] + real.class_slice(c).start
            generator = torch.Generator().manual_seed(int(time.time() * 1000) % 100000)
            params = dsa.sample(1, generator)
            img_real = dsa.apply(images_all[index], params, torch.zeros(batch_real, dtype=torch.long))
            img_syn = dsa.apply(syn[c * ipc:(c + 1) * ipc], params, torch.zeros(ipc, dtype=torch.long))
            output_real = net.embed(img_real).detach()
            output_syn = net.embed(img_syn)
            loss = loss + ((output_real.mean(0) - output_syn.mean(0)) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


REFERENCES = {"datadam": reference_datadam, "dm": reference_dm}
#: condensekit's side at the reference's settings (speed.py measures it).
SETTINGS = {"datadam": {"preset": "official", "batch_real": 64}, "dm": {"batch_real": 256}}


def _one(side: str, method: str, ipc: int, iterations: int) -> float:
    if side == "reference":
        times = REFERENCES[method](ipc, iterations)[1:]
    else:
        sys.path.insert(0, os.path.dirname(__file__))
        from speed import measure

        row = measure(method, ipc, iterations, dict(SETTINGS[method]), compile=False)
        return row["s_per_iteration"]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="datadam,dm")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("SIDE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.one[0], args.one[1], args.ipc, args.iterations)))
        return
    import torch

    threads = torch.get_num_threads()
    for method in args.methods.split(","):
        results: dict[str, list[float]] = {"reference": [], "condensekit": []}
        for _ in range(args.rounds):
            for side in results:
                command = [sys.executable, __file__, "--one", side, method, "--ipc", str(args.ipc),
                           "--iterations", str(args.iterations)]
                out = subprocess.run(command, capture_output=True, text=True, env=os.environ)
                if out.returncode != 0:
                    sys.exit(f"{side} {method} failed: {out.stderr.strip().splitlines()[-1]}")
                results[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
        ref, ours = statistics.median(results["reference"]), statistics.median(results["condensekit"])
        print(f"{method:8s} ipc {args.ipc:3d}  reference {ref:6.3f} s/it  condensekit {ours:6.3f} s/it  "
              f"ratio {ours / ref:5.2f}  (threads {threads}; per round: reference "
              f"{[round(t, 3) for t in results['reference']]}, condensekit "
              f"{[round(t, 3) for t in results['condensekit']]})", flush=True)


if __name__ == "__main__":
    main()
