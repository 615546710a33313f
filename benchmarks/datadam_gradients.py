"""How much of DataDAM's image gradient comes from attention matching (SAM) and how much from
the embedding (MMD) term, with the plugin's resolved weights (default preset: x100 overall,
lambda 0.01 at 32 px).

    python benchmarks/datadam_gradients.py [--preset tuned] [--power P] [--loss-scale S]
        [--mmd-weight W] [--trials 5] [--batch-real N]

For a few freshly initialized ConvNet-3s (the preset's norm), it takes 10 real images per class of
CIFAR-10 as the synthetic set (the `real` init) and a separate real batch per class, without
augmentation, and prints both terms, the norms of their gradients with respect to the images,
and the cosine between those gradients.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from condensekit.backbones import create_backbone
from condensekit.data import load_dataset
from condensekit.distill import DistillRequest, plan
from condensekit.methods.common import frozen
from condensekit.methods.matching import mean_discrepancy
from condensekit_datadam.attention import attention_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=None, help="DataDAM preset (default: the plugin's default)")
    parser.add_argument("--power", type=float, default=None)
    parser.add_argument("--loss-scale", type=float, default=None)
    parser.add_argument("--mmd-weight", type=float, default=None)
    parser.add_argument("--batch-real", type=int, default=None)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--ipc", type=int, default=10)
    args = parser.parse_args()
    overrides = {
        "power": args.power,
        "loss_scale": args.loss_scale,
        "mmd_weight": args.mmd_weight,
        "batch_real": args.batch_real,
    }
    # The resolved config and the network (official: convnet-bn) exactly as `distill` picks them.
    p = plan(DistillRequest("datadam", "cifar10", args.ipc, preset=args.preset, config=overrides, device="cpu"))
    cfg, info = p.config, p.dataset
    data = load_dataset(info.name)
    num = info.num_classes
    classes = list(range(num))
    syn_init = data.sample(classes, args.ipc, [torch.Generator().manual_seed(100 + c) for c in classes])
    for trial in range(args.trials):
        net = frozen(
            create_backbone(p.backbone, channels=info.channels, num_classes=num, resolution=info.resolution, seed=trial)
        )
        real = data.sample(classes, cfg.batch_real, [torch.Generator().manual_seed(1000 * trial + c) for c in classes])
        with torch.no_grad():
            real_maps, real_emb = net.intermediates(real)
        syn = syn_init.clone().requires_grad_(True)
        syn_maps, syn_emb = net.intermediates(syn)
        sam = cfg.loss_scale * attention_loss(real_maps[:-1], syn_maps[:-1], num, cfg.power)
        mmd = cfg.loss_scale * cfg.mmd_weight * mean_discrepancy(real_emb, syn_emb, num)
        (grad_sam,) = torch.autograd.grad(sam, syn, retain_graph=True)
        (grad_mmd,) = torch.autograd.grad(mmd, syn)
        cosine = F.cosine_similarity(grad_sam.flatten(), grad_mmd.flatten(), dim=0).item()
        ratio = (grad_sam.norm() / grad_mmd.norm()).item()
        print(
            f"p={cfg.power:g} net {trial}: SAM {sam.item():.2f}  MMD {mmd.item():.2f}  "
            f"|grad SAM| {grad_sam.norm().item():.3f}  |grad MMD| {grad_mmd.norm().item():.3f}  "
            f"ratio {ratio:.3f}  cosine {cosine:.3f}"
        )


if __name__ == "__main__":
    main()
