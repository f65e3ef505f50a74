"""The diffusion family (DDPM / PD church UNets) behind the harness: one denoising step for the efficiency task,
SDEdit images for ``task=generate``, the LSUN Church SDEdit set for ``task=quality``.

Inputs of one step follow the SDEdit protocol at the sampler's start step ``t = seq[-1]``: the original and the
edited image noised with the same noise; the ``sige`` variants run a full pass on the original, then sparse
passes on the edited input.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from diffusion.build import build_model, model_input, schedule_and_sequence
from diffusion.edits import EditCase, dataset_edit, load_case, mask_pyramid
from diffusion.sdedit import EditSession, sdedit
from sigebench.family import Case, Display, QualitySet
from sigebench.images import save_image
from sigebench.schedules import q_sample

COMPONENTS = ("unet",)
MODEL_KEYS = {"name", "family", "arch", "resolution", "unet", "checkpoint", "use_ema", "mask", "sampler"}
QUALITY_METRICS = ("psnr", "lpips", "fid")
GT_FILES = 423  # files 000-422 of the set have a ground truth (the CoModGAN-inpainted originals)
DATASET_SIZE = 454


def _case(model_cfg: Mapping[str, Any], edit: Mapping[str, Any]) -> EditCase:
    m = model_cfg.get("mask") or {}
    return load_case(edit, int(model_cfg["resolution"]), float(m.get("eps", 0.02)), int(m.get("dilation", 2)))


def prepare(
    model_cfg: Mapping[str, Any],
    edit: Mapping[str, Any],
    component: str,
    device: str,
    dtype: torch.dtype,
    weights: str | None,
) -> Case:
    model, label = build_model(dict(model_cfg), weights)
    model = model.to(device=device, dtype=dtype)
    case = _case(model_cfg, edit)
    schedule, seq = schedule_and_sequence(dict(model_cfg))
    t = seq[-1]
    noise = torch.randn(case.original.shape, generator=torch.Generator().manual_seed(0))
    xo = q_sample(case.original, t, noise, schedule).to(device, dtype)
    xe = q_sample(case.edited, t, noise, schedule).to(device, dtype)
    cond = model_input(schedule, t, 1, device)
    masks = {k: v.to(device) for k, v in mask_pyramid(case.mask, model.min_resolution()).items()}
    res = int(model_cfg["resolution"])
    return Case(
        model=model,
        original=(xo, cond),
        edited=(xe, cond),
        masks=masks,
        edited_fraction=round(case.edited_fraction, 6),
        weights=label,
        columns={"resolution": res, "timestep": t},
        display=Display(
            original=case.original[0].numpy(),
            edited=case.edited[0].numpy(),
            mask=case.mask.numpy(),
            size=(res, res),
            output=lambda out: out[0, :3].float().cpu().numpy(),
        ),
    )


def _setup(cfg: Mapping[str, Any]):
    model_cfg = dict(cfg["model"])
    device, dtype = cfg["device"]["name"], getattr(torch, cfg.get("dtype", "float32"))
    model, label = build_model(model_cfg, cfg.get("weights"))
    schedule, seq = schedule_and_sequence(model_cfg)
    return model_cfg, device, dtype, model.to(device=device, dtype=dtype), label, schedule, seq


def _edit_one(model, model_cfg, schedule, seq, case: EditCase, variant: str, seed: int, device, dtype, grid: str):
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(case.original.shape, generator=gen).to(device, dtype)
    o, e = case.original.to(device, dtype), case.edited.to(device, dtype)
    step_gen = torch.Generator().manual_seed(seed + 1)
    if variant == "session":
        session = EditSession(model, model_cfg["sampler"], schedule, seq, o, noise)
        out = session.edit(e, case.mask, block_grid=grid, generator=step_gen)
        return out, {"cache_mb": round(session.cache_nbytes() / 2**20, 1)}
    if variant not in ("original", "sige"):
        raise ValueError(f"unknown generate variant {variant!r}; use original, sige or session")
    mode = "dense" if variant == "original" else "sige"
    out = sdedit(model, model_cfg["sampler"], schedule, seq, o, e, case.mask, noise, mode=mode, block_grid=grid,
                 generator=step_gen)  # fmt: skip
    return out, {}


def generate(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Edit one case with every requested variant and write PNGs; returns (and prints) one row per image."""
    model_cfg, device, dtype, model, label, schedule, seq = _setup(cfg)
    task = cfg["task"]
    case = _case(model_cfg, cfg["edit"])
    seed = int(task.get("seed") if task.get("seed") is not None else cfg["edit"].get("seed") or 0)
    out_dir = Path(task.get("out_dir", "results/generate")) / model_cfg["name"]
    save_image(case.original, out_dir / f"{case.name}_original_input.png")
    save_image(case.edited, out_dir / f"{case.name}_edited_input.png")
    save_image(case.mask.cpu().numpy(), out_dir / f"{case.name}_mask.png")
    rows = []
    for variant in task.get("variants") or ["sige"]:
        t0 = time.perf_counter()
        out, extra = _edit_one(model, model_cfg, schedule, seq, case, variant, seed, device, dtype,
                               task.get("block_grid", "trimmed"))  # fmt: skip
        path = save_image(out, out_dir / f"{case.name}_{variant}.png")
        row = {
            "model": model_cfg["name"], "edit": case.name, "variant": variant, "sampler": model_cfg["sampler"]["name"],
            "steps": len(seq), "edited_fraction": round(case.edited_fraction, 6),
            "seconds": round(time.perf_counter() - t0, 2), "weights": label, "path": str(path), **extra,
        }  # fmt: skip
        print(json.dumps(row))
        rows.append(row)
    return rows


def parse_indices(spec: Any) -> list[int]:
    """``"a:b"``, ``"7"``, ``7`` or a list of ints -> dataset indices (each in 0..453)."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        out = [spec]
    elif isinstance(spec, list | tuple):
        out = [int(i) for i in spec]
    elif isinstance(spec, str) and ":" in spec:
        a, b = spec.split(":", 1)
        out = list(range(int(a or 0), int(b or DATASET_SIZE)))
    elif isinstance(spec, str) and spec.strip().isdigit():
        out = [int(spec)]
    else:
        raise ValueError(f"edit.indices must be 'a:b', an int or a list of ints, got {spec!r}")
    bad = [i for i in out if not 0 <= i < DATASET_SIZE]
    if bad or not out:
        raise ValueError(
            f"edit.indices selects {bad or 'nothing'}; the LSUN Church SDEdit set has indices 0..{DATASET_SIZE - 1}"
        )
    return out


def quality_set(cfg: Mapping[str, Any], folder: Path) -> QualitySet:
    """Generate (resumably) the dense and SIGE edits of the selected pairs into ``folder``; references: the
    ground truth (``gt``, files 000-422) or the dense model's images (``original``)."""
    from sigebench.data import data_path

    model_cfg, device, dtype, model, label, schedule, seq = _setup(cfg)
    task, edit = cfg["task"], cfg["edit"]
    if edit.get("kind") != "dataset":
        raise ValueError(
            f"task=quality runs on the LSUN Church SDEdit set (edit=church_sdedit), got edit={edit['name']}"
        )
    references = task.get("references") or ["gt"]
    bad = [r for r in references if r not in ("gt", "original")]
    if bad:
        raise ValueError(f"task.references for the diffusion models: gt and/or original, got {bad}")
    indices = parse_indices(edit.get("indices") if edit.get("indices") is not None else f"0:{DATASET_SIZE}")
    seed, grid = int(task.get("seed") or 0), task.get("block_grid", "trimmed")
    folders = {v: folder / v for v in ("original", "sige")}
    for idx in indices:
        name = f"{idx:03d}"
        todo = [v for v, f in folders.items() if not (f / f"{name}.png").is_file()]
        if not todo:
            continue
        case = load_case(dataset_edit(edit, idx), int(model_cfg["resolution"]), float(model_cfg["mask"]["eps"]),
                         int(model_cfg["mask"]["dilation"]))  # fmt: skip
        for v in todo:
            out, _ = _edit_one(model, model_cfg, schedule, seq, case, v, seed, device, dtype, grid)
            save_image(out, folders[v] / f"{name}.png")
    root = Path(data_path(edit["manifest"], edit.get("folder", "church_outdoor_sdedit")))
    names = [f"{i:03d}" for i in indices]
    compare: list[tuple[str, str]] = []
    if "gt" in references:
        with_gt = [n for n in names if int(n) < GT_FILES]
        if not with_gt:
            raise ValueError("no selected index has a ground truth (files 000-422); use task.references=[original]")
        compare += [("original", "gt"), ("sige", "gt")]
    if "original" in references:
        compare.append(("sige", "original"))
    masks = None
    if task.get("masked"):
        import numpy as np

        masks = {n: np.load(root / "masks" / f"{n}.npy") for n in names}
    stats = task.get("fid_stats")
    if stats is None and "fid" in (task.get("metrics") or QUALITY_METRICS):
        from sigebench.metrics import resolve

        stats = resolve({"lsun_church_fid_stats": None})["lsun_church_fid_stats"]
    return QualitySet(
        variants=folders,
        names=names,
        references={"gt": root / "gt", "original": folders["original"]},
        compare=compare,
        compare_names={"gt": [n for n in names if int(n) < GT_FILES]},
        fid_reference=Path(stats) if stats else None,
        masks=masks,
        weights=label,
    )
