"""Differentiable Siamese Augmentation (DSA), the one implementation used by every method and
by evaluation.

Semantics follow the DC/DSA code (``utils.py :: DiffAugment``, ``ParamDiffAug``) and, in mode
``"idc"``, the IDC/DANCE ``DiffAug``. Randomness is separated from application: :meth:`DSA.sample`
draws parameter sets on the CPU from a ``torch.Generator`` and :meth:`DSA.apply` applies them
batched on the images' device. Sharing one parameter set between a class's real and synthetic
batch is what makes the augmentation Siamese (DC achieves this by re-seeding a global RNG).

Every op is differentiable in the images, so gradients reach the synthetic pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from condensekit.errors import UsageError

DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"

#: Op families in the order they are applied when several are active in one set (IDC order:
#: flip, color, one geometric op, cutout). In mode "dsa" only one family is active per set.
OPS: tuple[str, ...] = ("flip", "color", "crop", "scale", "rotate", "cutout")
GEOMETRIC: tuple[str, ...] = ("crop", "scale", "rotate")

#: Columns of :attr:`AugParams.values`: every op's random quantities as uniforms in [0, 1),
#: mapped to ranges at apply time (crop/cutout depend on the image size, unknown at sampling).
VALUES: tuple[str, ...] = (
    "flip",
    "brightness",
    "saturation",
    "contrast",
    "crop_x",
    "crop_y",
    "scale_x",
    "scale_y",
    "rotate",
    "cutout_x",
    "cutout_y",
)
_V = {name: i for i, name in enumerate(VALUES)}
_OP = {name: i for i, name in enumerate(OPS)}


@dataclass(frozen=True)
class DSAConfig:
    """``ParamDiffAug`` defaults (identical in the DC, DSA, DM and DataDAM code)."""

    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0  # degrees
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


@dataclass(frozen=True)
class AugParams:
    """``n`` parameter sets: which op families each applies, and their random values.

    ``active`` is a (n, len(OPS)) bool tensor, ``values`` a (n, len(VALUES)) float tensor of
    uniforms in [0, 1). Both live on the CPU; a set is self-describing, so sets drawn by
    different :class:`DSA` objects can be concatenated.
    """

    active: torch.Tensor
    values: torch.Tensor

    def __len__(self) -> int:
        return int(self.active.shape[0])

    @staticmethod
    def cat(params: Sequence[AugParams]) -> AugParams:
        """One object holding the sets of ``params`` in order."""
        if not params:
            raise ValueError("AugParams.cat needs at least one AugParams")
        return AugParams(torch.cat([p.active for p in params]), torch.cat([p.values for p in params]))

    def index(self, groups: torch.Tensor) -> AugParams:
        """Set ``groups[i]`` for each ``i``."""
        groups = groups.detach().to("cpu", torch.long)
        return AugParams(self.active[groups], self.values[groups])


def _flip(x: torch.Tensor, v: torch.Tensor, cfg: DSAConfig) -> torch.Tensor:
    flip = (v[:, _V["flip"]] < cfg.prob_flip).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


def _color(x: torch.Tensor, v: torch.Tensor, cfg: DSAConfig) -> torch.Tensor:
    # DC's 'color' = brightness, saturation, contrast, in that order.
    def u(name: str) -> torch.Tensor:
        return v[:, _V[name]].view(-1, 1, 1, 1).to(x.dtype)

    x = x + (u("brightness") - 0.5) * cfg.brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (u("saturation") * cfg.saturation) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (u("contrast") + cfg.contrast) + mean


def _shift(size: int, ratio: float) -> int:
    return int(size * ratio + 0.5)  # DC's rounding (round half up)


def _uniform_int(u: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """Integers in [low, high] from uniforms in [0, 1) (as torch.randint(low, high + 1))."""
    return (u * (high - low + 1)).floor().long().clamp_(max=high - low) + low


def _crop(x: torch.Tensor, v: torch.Tensor, cfg: DSAConfig) -> torch.Tensor:
    # Integer translation with zero fill: DC pads by one zero pixel and clamps indices into
    # the padded image, so every out-of-range read lands on the zero border.
    b, c, h, w = x.shape
    sh, sw = _shift(h, cfg.ratio_crop_pad), _shift(w, cfg.ratio_crop_pad)
    tx = _uniform_int(v[:, _V["crop_x"]], -sh, sh)
    ty = _uniform_int(v[:, _V["crop_y"]], -sw, sw)
    rows = (torch.arange(h, device=x.device) + tx[:, None] + 1).clamp(0, h + 1)  # (b, h)
    cols = (torch.arange(w, device=x.device) + ty[:, None] + 1).clamp(0, w + 1)  # (b, w)
    padded = F.pad(x, [1, 1, 1, 1])
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def _scale(x: torch.Tensor, v: torch.Tensor, cfg: DSAConfig) -> torch.Tensor:
    r = cfg.ratio_scale
    sx = v[:, _V["scale_x"]] * (r - 1.0 / r) + 1.0 / r
    sy = v[:, _V["scale_y"]] * (r - 1.0 / r) + 1.0 / r
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _affine(x, theta)


def _rotate(x: torch.Tensor, v: torch.Tensor, cfg: DSAConfig) -> torch.Tensor:
    angle = (v[:, _V["rotate"]] - 0.5) * 2 * cfg.ratio_rotate / 180 * math.pi
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _affine(x, theta)


def _cutout(x: torch.Tensor, v: torch.Tensor, cfg: DSAConfig) -> torch.Tensor:
    # A ratio_cutout-sized square centred uniformly over [0, side] (DC's offset range; the
    # square is clipped at the border).
    _, _, h, w = x.shape
    ch, cw = _shift(h, cfg.ratio_cutout), _shift(w, cfg.ratio_cutout)
    cx = _uniform_int(v[:, _V["cutout_x"]], 0, h - ch % 2) - ch // 2
    cy = _uniform_int(v[:, _V["cutout_y"]], 0, w - cw % 2) - cw // 2
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= cx[:, None]) & (rows < cx[:, None] + ch)  # (b, h)
    in_cols = (cols >= cy[:, None]) & (cols < cy[:, None] + cw)  # (b, w)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


_APPLY: dict[str, Callable[[torch.Tensor, torch.Tensor, DSAConfig], torch.Tensor]] = {
    "flip": _flip,
    "color": _color,
    "crop": _crop,
    "scale": _scale,
    "rotate": _rotate,
    "cutout": _cutout,
}


def _choices_dsa(tokens: list[str]) -> tuple[list[str], list[str]]:
    """DC mode 'S': no op always on; one token of the strategy chosen uniformly."""
    return [], tokens


def _choices_idc(tokens: list[str]) -> tuple[list[str], list[str]]:
    """IDC DiffAug: flip, color and cutout always (when listed); one geometric op chosen."""
    always: list[str] = [op for op in ("flip", "color", "cutout") if op in tokens]
    return always, [t for t in tokens if t not in always]


#: mode -> (tokens -> (families always applied, families one of which is chosen per set))
MODES: dict[str, Callable[[list[str]], tuple[list[str], list[str]]]] = {
    "dsa": _choices_dsa,
    "idc": _choices_idc,
}


class DSA:
    """Differentiable Siamese Augmentation with explicit, generator-drawn parameters.

    ``strategy`` is DC's underscore-separated op list (``"color"`` = brightness + saturation
    + contrast); ``""`` or ``"none"`` is the identity. ``mode="dsa"`` applies ONE op family
    per parameter set, chosen uniformly from the strategy (DC's mode 'S'); ``mode="idc"``
    applies flip and color always, then one of the listed geometric ops, then cutout (the
    IDC/DANCE ``DiffAug``).
    """

    def __init__(
        self,
        strategy: str = DEFAULT_STRATEGY,
        mode: str = "dsa",
        config: DSAConfig = DSAConfig(),
    ) -> None:
        if mode not in MODES:
            raise UsageError(f"unknown DSA mode {mode!r}; choose one of {', '.join(MODES)}")
        tokens = [] if strategy.lower() in ("", "none") else strategy.lower().split("_")
        unknown = sorted(set(tokens) - set(OPS))
        if unknown:
            raise UsageError(
                f"unknown DSA op(s) {', '.join(unknown)} in strategy {strategy!r}; use {'_'.join(OPS)} or a subset"
            )
        self.strategy = strategy
        self.mode = mode
        self.config = config
        always, choices = MODES[mode](tokens)
        self._always = torch.zeros(len(OPS), dtype=torch.bool)
        self._always[[_OP[op] for op in always]] = True
        self._choices = torch.tensor([_OP[op] for op in choices], dtype=torch.long)

    @property
    def identity(self) -> bool:
        return not bool(self._always.any()) and self._choices.numel() == 0

    def describe(self) -> dict[str, Any]:
        """Strategy, mode and parameters, for recording with results."""
        return {"strategy": self.strategy, "mode": self.mode, **asdict(self.config)}

    def __repr__(self) -> str:
        return f"DSA(strategy={self.strategy!r}, mode={self.mode!r})"

    def sample(self, n: int, generator: torch.Generator, share_op: bool = False) -> AugParams:
        """``n`` independent parameter sets drawn from ``generator`` (a CPU generator).

        The same count of random numbers is drawn whatever ops are chosen, so the stream of
        a generator does not depend on the strategy's choices. ``share_op`` makes every set
        use the first set's op choice (other values stay independent), as DC's evaluation
        ``epoch()`` does: one op family per batch, per-sample parameters.
        """
        draws = torch.rand(n, 1 + len(VALUES), generator=generator)
        active = self._always.expand(n, -1).clone()
        if self._choices.numel():
            pick = draws[:, 0] if not share_op else draws[:1, 0].expand(n)
            chosen = self._choices[_uniform_int(pick, 0, self._choices.numel() - 1)]
            active[torch.arange(n), chosen] = True
        return AugParams(active, draws[:, 1:].contiguous())

    def apply(self, x: torch.Tensor, params: AugParams, groups: torch.Tensor | None = None) -> torch.Tensor:
        """Apply set ``groups[i]`` to image ``x[i]`` (``groups`` None: set ``i`` to image ``i``).

        Batched on ``x``'s device: one pass per op family over the images that use it.
        """
        if groups is not None:
            if groups.shape != (x.shape[0],):
                raise ValueError(f"groups must have shape ({x.shape[0]},), got {tuple(groups.shape)}")
            params = params.index(groups)
        elif len(params) != x.shape[0]:
            raise ValueError(f"{len(params)} parameter sets for {x.shape[0]} images; pass groups")
        values = params.values.to(x.device)  # float32 even for low-precision x: ints come from it
        for op in OPS:
            mask = params.active[:, _OP[op]]  # on the CPU: no device sync to test it
            if not bool(mask.any()):
                continue
            fn = _APPLY[op]
            if bool(mask.all()):
                x = fn(x, values, self.config)
            else:
                idx = mask.nonzero().squeeze(1).to(x.device)
                x = x.index_copy(0, idx, fn(x.index_select(0, idx), values.index_select(0, idx), self.config))
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per-sample random augmentation (training on a synthetic set): one op family for
        the batch, independent parameters per image, as DC's ``epoch()`` calls DiffAugment."""
        if self.identity:
            return x
        return self.apply(x, self.sample(x.shape[0], generator, share_op=True))


#: Tries at a random box before the central fallback (torchvision's RandomResizedCrop).
CROP_BOX_TRIES = 10


def random_resized_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random-resized crop, drawn from ``generator``: torchvision's
    ``RandomResizedCrop.get_params`` algorithm (area fraction uniform in ``scale``, log aspect
    ratio uniform in ``log(ratio)``, up to :data:`CROP_BOX_TRIES` tries, then the central crop
    clamped to ``ratio``), which draws from the global RNG instead."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(CROP_BOX_TRIES):
        target_area = area * float(torch.empty(1).uniform_(scale[0], scale[1], generator=generator))
        aspect = math.exp(float(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w
