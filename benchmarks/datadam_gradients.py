"""How much of DataDAM's image gradient comes from attention matching (SAM) and how much from
the embedding (MMD) term, at the released weights (x100 overall, lambda 0.01).

    python benchmarks/datadam_gradients.py [--power 1] [--trials 5] [--batch-real 64]

For a few freshly initialized ConvNet-3s (instance norm), it takes 10 real images per class of
CIFAR-10 as the synthetic set (the `real` init) and a separate real batch per class, without
augmentation, and prints both terms, the norms of their gradients with respect to the images,
and the cosine between those gradients.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from condensekit_datadam.attention import attention_distance, attention_map

from condensekit.backbones import create_backbone
from condensekit.data import load_dataset
from condensekit.methods.common import frozen
from condensekit.methods.matching import mean_discrepancy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--power", type=float, default=1.0)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--batch-real", type=int, default=64)
    parser.add_argument("--ipc", type=int, default=10)
    args = parser.parse_args()
    data = load_dataset("cifar10")
    classes = list(range(data.info.num_classes))
    num = len(classes)
    syn_init = data.sample(classes, args.ipc, [torch.Generator().manual_seed(100 + c) for c in classes])
    for trial in range(args.trials):
        net = frozen(create_backbone("convnet", channels=3, num_classes=num, resolution=32, seed=trial))
        real = data.sample(classes, args.batch_real, [torch.Generator().manual_seed(1000 * trial + c) for c in classes])
        with torch.no_grad():
            maps, real_emb = net.intermediates(real)
            real_attention = [attention_map(f, args.power) for f in maps[:-1]]
        syn = syn_init.clone().requires_grad_(True)
        maps, syn_emb = net.intermediates(syn)
        sam = 100 * attention_distance(real_attention, [attention_map(f, args.power) for f in maps[:-1]], num)
        mmd = 100 * 0.01 * mean_discrepancy(real_emb, syn_emb, num)
        (grad_sam,) = torch.autograd.grad(sam, syn, retain_graph=True)
        (grad_mmd,) = torch.autograd.grad(mmd, syn)
        cosine = F.cosine_similarity(grad_sam.flatten(), grad_mmd.flatten(), dim=0).item()
        ratio = (grad_sam.norm() / grad_mmd.norm()).item()
        print(f"p={args.power:g} net {trial}: SAM {sam.item():.2f}  MMD {mmd.item():.2f}  "
              f"|grad SAM| {grad_sam.norm().item():.3f}  |grad MMD| {grad_mmd.norm().item():.3f}  "
              f"ratio {ratio:.3f}  cosine {cosine:.3f}")


if __name__ == "__main__":
    main()
