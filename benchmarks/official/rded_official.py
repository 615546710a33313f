"""Run the OFFICIAL RDED synthesis (LINs-lab/RDED, as released) on CIFAR-10 with a condensekit
teacher, and time it. Our glue only: the official code is imported, unmodified, from a work
tree extracted from its git mirror into a build folder outside this repository.

    python benchmarks/official/rded_official.py --teacher REF --registry R [--out DIR]
           [--ipc 10] [--mirror MIRROR] [--build DIR] [--npz train.npz] [--seed 42]

What it does (everything before the timed call is set-up, done once and reused):

1. Extracts the mirror (``git archive HEAD``) into ``$OFFICIAL_BUILD/src`` (default
   ``~/.cache/condensekit-official/rded``); re-extracts only when the mirror's commit changed.
2. Writes the CIFAR-10 train split (``shared/data/cifar10-npz/train.npz``) as PNGs in the layout
   the official ``validation/utils.py`` ``ImageFolder`` reads, ``<work>/data/cifar10/train/
   <class:05d>/<original CIFAR file name>.png`` (PNG is lossless: the original pixels).
   ``argument.py`` derives ``train_dir = ./data/<subset>/train/``, the teacher path
   ``./data/pretrain_models/<subset>_<arch>.pth`` and ``syn_data_path = ./exp/<exp_name>/syn_data``
   relative to the working directory, so the official code runs with ``<work>`` as its cwd and
   every path it derives stays as released.
3. Converts expert 0 of a condensekit experts artifact (backbone ``convnet-bn``) into the
   official ``synthesize/models.py`` ConvNet exactly as the official ``load_model`` builds it
   (``net_norm="batch"``, width 128, depth 3, avg-pooling), module by module in forward order
   with type, key and shape checks, saves ``{"model": state_dict}`` where ``load_model`` reads it,
   and checks that both networks give the same logits (max abs diff < 1e-4).
4. In a fresh process (so the peak RSS is the synthesis's own): sets ``sys.argv`` to the
   arguments of the official ``scripts/cifar10_10ipc_conv3_to_conv3_cr5.sh`` (read from the
   extracted tree: factor 1, num_crop 5, mipc 300, ipc 10, conv3), imports ``argument`` and
   ``synthesize.main``, and times ``synthesize.main.main(args)`` (teacher load, ImageFolder scan,
   crops, scoring, selection, JPEG writing). Prints one JSON line:
   ``{"side": "official", "seconds", "s_per_image", "peak_rss_mb", "out_dir", ...}``.

Harness settings (attributes of ``args`` set after ``argument.py`` ran, not code changes):
  * ``args.workers = 0``: ``argument.py`` sets 4 DataLoader worker processes for IPC 10; 0 keeps
    the run in one process (fair on a 2-core machine, and what makes ``ru_maxrss`` complete).
    Same batches, same transforms, loaded in the main process.
  * ``random``/``numpy``/``torch`` are seeded with ``args.seed`` (42) before ``main`` (the
    released ``main.py`` seeds nothing; this only fixes which 300 files per class are drawn).

Runtime shims (no official file is edited; applied in memory, only where CUDA is absent):
  * ``torch.Tensor.cuda`` -> returns the tensor: ``synthesize/utils.py`` ``selector`` calls
    ``images.cuda()``, ``labels.repeat(m).cuda()`` and ``pad(...).cuda()`` unconditionally.
  * ``torch.nn.Module.cuda`` -> returns the module: ``synthesize/main.py`` does
    ``nn.DataParallel(model_teacher).cuda()``.
Not shimmed, because they already work on a CPU-only torch: ``nn.DataParallel`` (no CUDA
device: ``device_ids == []`` and ``forward`` calls the module directly) and
``torch.cuda.empty_cache()`` (a no-op while CUDA is not initialised).

Official behaviour to keep in mind when reading the results: RDED normalizes every crop with
the ImageNet mean/std (``synthesize/utils.py`` ``normalize``) for every dataset, CIFAR-10
included, whereas condensekit's teacher was trained on CIFAR-10's own mean/std. The teacher
therefore scores the crops in a slightly shifted input space; the harness reports the teacher's
test accuracy under both normalizations so the size of that shift is visible.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import resource
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OFFICIAL_SCRIPT = "scripts/cifar10_10ipc_conv3_to_conv3_cr5.sh"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def default_mirror() -> str:
    if os.environ.get("RDED_MIRROR"):
        return os.environ["RDED_MIRROR"]
    root = os.environ.get("MIRROR_ROOT", "/work/.mirror")
    return os.path.join(root, "LINs-lab+RDED", "repo")


def default_build() -> str:
    return os.environ.get("OFFICIAL_BUILD") or os.path.join(
        os.path.expanduser("~"), ".cache", "condensekit-official", "rded"
    )


def default_npz() -> str:
    data = os.environ.get("CONDENSEKIT_DATA") or str(REPO.parent / "shared" / "data")
    return os.path.join(data, "cifar10-npz", "train.npz")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


# ----------------------------------------------------------------------------- set-up
def extract(mirror: str, build: Path) -> tuple[Path, str]:
    """The official work tree at ``build/src`` (re-extracted when the mirror's HEAD moved)."""
    if not os.path.isdir(mirror):
        sys.exit(f"no RDED mirror at {mirror}: pass --mirror or set RDED_MIRROR (a bare clone of LINs-lab/RDED)")
    commit = subprocess.run(
        ["git", "--git-dir", mirror, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    src = build / "src"
    stamp = src / ".official_commit"
    if stamp.is_file() and stamp.read_text().strip() == commit:
        return src, commit
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    tar = subprocess.run(
        ["git", "--git-dir", mirror, "archive", "--format=tar", commit], capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        archive.extractall(src, filter="data")
    stamp.write_text(commit + "\n")
    return src, commit


def write_train_pngs(npz: str, dest: Path) -> dict:
    """CIFAR-10 train as ``dest/<class:05d>/<name>.png`` (once; reused when complete)."""
    import numpy as np
    from PIL import Image

    marker = dest / ".complete.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    started = time.perf_counter()
    data = np.load(npz)
    x, y = data["x"], data["y"].astype(np.int64)
    names_file = Path(npz).with_name("train_files.txt")
    names = names_file.read_text().split() if names_file.is_file() else []
    if len(names) != len(x):
        names = [f"{i:05d}.png" for i in range(len(x))]
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    for c in sorted(set(y.tolist())):
        (tmp / f"{c:05d}").mkdir(parents=True)
    seen = set()
    for i in range(len(x)):
        name = f"{int(y[i]):05d}/{Path(names[i]).stem}.png"
        if name in seen:  # keep every image even if two source names collide
            name = f"{int(y[i]):05d}/{Path(names[i]).stem}_{i}.png"
        seen.add(name)
        Image.fromarray(x[i]).save(tmp / name)
    counts = {f"{c:05d}": int((y == c).sum()) for c in sorted(set(y.tolist()))}
    info = {
        "source": os.path.abspath(npz),
        "images": len(x),
        "per_class": counts,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (tmp / ".complete.json").write_text(json.dumps(info, indent=1))
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return info


def official_argv(src: Path, ipc: int | None) -> list[str]:
    """The arguments of the official CIFAR-10 script, read from the extracted tree."""
    words = shlex.split((src / OFFICIAL_SCRIPT).read_text().replace("\\\n", " "))
    argv = words[words.index("./main.py") + 1 :]
    if ipc is not None:
        argv[argv.index("--ipc") + 1] = str(ipc)
    return argv


def enter_official(src: Path, work: Path, argv: list[str]):
    """cwd = work, official tree first on sys.path, sys.argv = the script's; returns ``args``."""
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    sys.path.insert(0, str(src))
    sys.argv = ["main.py", *argv]
    import argument  # parses sys.argv at import, derives train_dir/syn_data_path/classes/input_size

    return argument.args


def apply_cpu_shims() -> list[str]:
    """See the module docstring; only where CUDA is absent."""
    import torch

    if torch.cuda.is_available():
        return []
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    return [
        "torch.Tensor.cuda -> no-op (selector moves crops/labels with .cuda())",
        "torch.nn.Module.cuda -> no-op (main wraps the teacher in nn.DataParallel(...).cuda())",
    ]


def convert_teacher(registry: str, ref: str, args, npz: str) -> dict:
    """Expert 0 of ``ref`` -> the official ConvNet, saved where ``load_model`` reads it."""
    import numpy as np
    import torch
    from synthesize.utils import load_model  # official

    from condensekit.backbones import create_backbone
    from condensekit.data import dataset_info
    from condensekit.registry import Registry

    experts = Registry(registry).load_experts(ref)
    info = dataset_info(experts.dataset, experts.resolution)
    if experts.dataset != args.subset or experts.backbone != "convnet-bn" or experts.resolution != args.input_size:
        sys.exit(
            f"{ref}: {experts.dataset}/{experts.backbone}/{experts.resolution}px experts; the official "
            f"{args.arch_name} teacher needs {args.subset} convnet-bn at {args.input_size}px"
        )
    ours = create_backbone(
        experts.backbone, channels=info.channels, num_classes=info.num_classes, resolution=info.resolution
    )
    ours.load_state_dict(experts.trained[0])
    official = load_model(model_name=args.arch_name, dataset=args.subset, pretrained=False, classes=args.classes)

    # Modules holding state, in forward order on both sides: conv, norm per block, classifier.
    ours_modules = [m for block in ours.blocks for m in (block[0], block[1])] + [ours.classifier]
    off_layers = official.layers
    off_modules = [m for d in range(official.depth) for m in (off_layers["conv"][d], off_layers["norm"][d])]
    off_modules.append(official.classifier)
    if len(ours_modules) != len(off_modules):
        sys.exit(f"{len(ours_modules)} stateful modules in ours, {len(off_modules)} in the official ConvNet")
    mapping = []
    with torch.no_grad():
        for a, b in zip(ours_modules, off_modules, strict=True):
            sa, sb = a.state_dict(), b.state_dict()
            if type(a) is not type(b) or list(sa) != list(sb):
                sys.exit(f"module mismatch: {type(a).__name__}{list(sa)} vs {type(b).__name__}{list(sb)}")
            for key in sa:
                if sa[key].shape != sb[key].shape or sa[key].dtype != sb[key].dtype:
                    sys.exit(f"{key}: {tuple(sa[key].shape)} vs {tuple(sb[key].shape)}")
            b.load_state_dict(sa)
            mapping.append(type(a).__name__)
    ours_keys, off_keys = list(ours.state_dict()), list(official.state_dict())
    if len(ours_keys) != len(off_keys):
        sys.exit(f"{len(ours_keys)} state entries in ours, {len(off_keys)} in the official ConvNet")
    state = {k: v.detach().clone() for k, v in official.state_dict().items()}

    # Same logits on real test images (both in eval mode, CIFAR-10 normalization).
    test = np.load(Path(npz).with_name("test.npz"))
    x = torch.from_numpy(test["x"]).permute(0, 3, 1, 2).contiguous().float().div(255)  # NCHW as ToTensor gives
    y = torch.from_numpy(test["y"].astype(np.int64))
    ours.eval()
    official.eval()

    def norm(t, mean, std):
        return (t - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)

    with torch.no_grad():
        batch = norm(x[::40], info.mean, info.std)  # 250 images across all classes
        diff = float((ours(batch) - official(batch)).abs().max())
        if not diff < 1e-4:
            sys.exit(f"converted teacher disagrees with condensekit's: max |logit diff| = {diff:.3g}")
        acc = {"images": len(x) // 5}  # every 5th test image: 200 per class
        spaces = {"cifar10_norm": (info.mean, info.std), "imagenet_norm": (IMAGENET_MEAN, IMAGENET_STD)}
        for label, (mean, std) in spaces.items():
            pred = torch.cat([official(norm(x[i : i + 1000 : 5], mean, std)).argmax(1) for i in range(0, len(x), 1000)])
            acc[label] = round(100.0 * float((pred == y[::5]).float().mean()), 2)
    path = Path(f"./data/pretrain_models/{args.subset}_{args.arch_name}.pth")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return {
        "ref": experts.metadata.get("ref", ref),
        "expert": 0,
        "backbone": experts.backbone,
        "path": str(path.resolve()),
        "sha256": digest,
        "modules_mapped": mapping,
        "state_entries": len(off_keys),
        "max_abs_logit_diff": diff,
        "test_accuracy": acc,
        "normalization": "official RDED normalizes crops with ImageNet mean/std (synthesize/utils.py); "
        "this teacher was trained with CIFAR-10 mean/std",
    }


def prepare(opts) -> dict:
    build = Path(opts.build).resolve()
    src, commit = extract(opts.mirror, build)
    work = build / "work"
    pngs = write_train_pngs(opts.npz, work / "data" / "cifar10" / "train")
    args = enter_official(src, work, official_argv(src, opts.ipc))
    if args.train_dir.rstrip("/") != "./data/cifar10/train":
        sys.exit(f"argument.py derived train_dir {args.train_dir}; expected ./data/cifar10/train/")
    teacher = convert_teacher(opts.registry, opts.teacher, args, opts.npz)
    info = {"commit": commit, "src": str(src), "work": str(work), "train_pngs": pngs, "teacher": teacher}
    (work / "prepared.json").write_text(json.dumps(info, indent=1))
    return info


# ----------------------------------------------------------------------------- timed run
def run_official(opts) -> dict:
    build = Path(opts.build).resolve()
    src, work = build / "src", build / "work"
    prepared = json.loads((work / "prepared.json").read_text())
    argv = official_argv(src, opts.ipc)
    args = enter_official(src, work, argv)
    shims = apply_cpu_shims()
    args.workers = 0
    import numpy as np
    import torch
    from synthesize.main import main  # official

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    load_before = load_average()
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # its print(args) and tqdm: keep stdout for the JSON line
        main(args)
    seconds = time.perf_counter() - started
    load_after = load_average()
    peak = peak_rss_mb()
    syn = Path(args.syn_data_path).resolve()
    images = sorted(p for p in syn.rglob("*.jpg"))
    out = syn
    if opts.out:
        out = Path(opts.out).resolve()
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(syn, out)
    result = {
        "side": "official",
        "seconds": round(seconds, 2),
        "s_per_image": round(seconds / max(len(images), 1), 4),
        "peak_rss_mb": peak,
        "out_dir": str(out),
        "images": len(images),
        "per_class": len(list((syn / "00000").glob("*.jpg"))),
        "commit": prepared["commit"],
        "argv": argv,
        "entry": "synthesize.main.main(args)",
        "workers": args.workers,
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "cpu_shims": shims,
        "teacher": prepared["teacher"]["ref"],
        "teacher_test_acc": prepared["teacher"]["test_accuracy"],
        "normalization": "ImageNet mean/std (official RDED, all datasets); teacher trained with CIFAR-10's",
        "load_before": load_before,
        "load_after": load_after,
    }
    (out / "official_run.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", help="condensekit experts ref (convnet-bn on cifar10); expert 0 teaches")
    parser.add_argument("--registry", help="condensekit registry holding --teacher")
    parser.add_argument("--out", help="copy the synthesized ImageFolder here (default: leave it in the build)")
    parser.add_argument("--ipc", type=int, default=None, help="override the script's --ipc 10")
    parser.add_argument("--mirror", default=default_mirror())
    parser.add_argument("--build", default=default_build())
    parser.add_argument("--npz", default=default_npz())
    parser.add_argument("--prepare-only", action="store_true", help="extract, write PNGs, convert the teacher; exit")
    parser.add_argument("--run-only", action="store_true", help="time the synthesis with what is prepared")
    opts = parser.parse_args()
    if not opts.run_only:
        if not (opts.teacher and opts.registry):
            parser.error("--teacher and --registry are needed to prepare the teacher")
        info = prepare(opts)
        print("PREPARED " + json.dumps(info), file=sys.stderr, flush=True)
        if opts.prepare_only:
            return
        # a fresh process, so the peak RSS is the synthesis's alone
        cmd = [sys.executable, os.path.abspath(__file__), "--run-only", "--build", opts.build, "--npz", opts.npz]
        cmd += ["--out", opts.out] if opts.out else []
        cmd += ["--ipc", str(opts.ipc)] if opts.ipc is not None else []
        sys.exit(subprocess.run(cmd, check=False).returncode)
    result = run_official(opts)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
