"""``task=generate`` and ``task=quality`` for the diffusion models (called with the whole composed config).

generate: one edit case -> PNGs under ``<out_dir>/<model>/``: ``<edit>_original.png``, ``<edit>_edited.png``,
``<edit>_mask.png`` and one result per mode of ``model.generate_options.modes``: ``dense`` (the original
model), ``sige`` (the reference's per-step protocol) and ``session`` (cached original trajectory, one cache
slot per step; its cache memory is printed). One JSON line per result.

quality: the LSUN Church SDEdit set (``datasets/lsun_church_sdedit.yaml``): every selected pair is edited by
the dense and the SIGE model (resumable: existing PNGs are kept), then PSNR / LPIPS against the ground truth
(``reference=gt``, files 000-422) or against the dense model's outputs (``reference=original``), optionally
inside the dataset's masks, and FID against clean-fid's LSUN Church statistics. Rows are printed as JSON and
appended to ``results/quality.csv``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffusion.build import build_model, schedule_and_sequence
from diffusion.edits import EditCase, load_edit
from diffusion.sdedit import EditSession, sdedit

GT_FILES = 423  # files 000-422 of the dataset have a ground truth (the CoModGAN-inpainted originals)
DATASET_SIZE = 454


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` in [-1, 1] -> uint8 ``[H, W, 3]`` (as torchvision's save_image rounds)."""
    x = ((x[0].float().cpu().clamp(-1, 1) + 1) / 2 * 255 + 0.5).clamp(0, 255)
    return x.to(torch.uint8).permute(1, 2, 0).numpy()


def save_png(x: torch.Tensor | np.ndarray, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    a = to_uint8(x) if isinstance(x, torch.Tensor) else x
    Image.fromarray(a).save(path)
    return path


def _setup(cfg: dict[str, Any]):
    model_cfg = cfg["model"]
    device, dtype = cfg["device"]["name"], getattr(torch, cfg.get("dtype", "float32"))
    model = build_model(model_cfg, cfg.get("weights")).to(device=device, dtype=dtype)
    schedule, seq = schedule_and_sequence(model_cfg)
    return model_cfg, device, dtype, model, schedule, seq


def _edit_one(model, model_cfg, schedule, seq, case: EditCase, mode: str, seed: int, device, dtype):
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(case.original.shape, generator=gen).to(device, dtype)
    o, e = case.original.to(device, dtype), case.edited.to(device, dtype)
    step_gen = torch.Generator().manual_seed(seed + 1)
    if mode == "session":
        session = EditSession(model, model_cfg["sampler"], schedule, seq, o, noise)
        out = session.edit(e, case.mask, generator=step_gen)
        return out, {"cache_mb": round(session.cache_nbytes() / 2**20, 1)}
    if mode not in ("dense", "sige"):
        raise ValueError(f"unknown generate mode {mode!r}; use dense, sige or session")
    out = sdedit(model, model_cfg["sampler"], schedule, seq, o, e, case.mask, noise, mode=mode, generator=step_gen)
    return out, {}


def generate(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Edit one case with every requested mode and write PNGs; returns (and prints) one row per result."""
    model_cfg, device, dtype, model, schedule, seq = _setup(cfg)
    opts = model_cfg.get("generate_options") or {}
    res = int(model_cfg["resolution"])
    case = load_edit(cfg["edit"], res, float(model_cfg["edit_eps"]), int(model_cfg["mask_dilate_radius"]))
    out_dir = Path(opts.get("out_dir", "results/generate")) / model_cfg["name"]
    save_png(case.original, out_dir / f"{case.name}_original.png")
    save_png(case.edited, out_dir / f"{case.name}_edited.png")
    save_png((case.mask.cpu().numpy() * 255).astype(np.uint8), out_dir / f"{case.name}_mask.png")
    rows = []
    for mode in opts.get("modes", ["sige"]):
        t0 = time.perf_counter()
        out, extra = _edit_one(model, model_cfg, schedule, seq, case, mode, int(opts.get("seed", 0)), device, dtype)
        path = save_png(out, out_dir / f"{case.name}_{mode}.png")
        row = {
            "model": model_cfg["name"], "edit": case.name, "mode": mode, "sampler": model_cfg["sampler"]["name"],
            "steps": len(seq), "edited_fraction": round(case.edited_fraction, 6),
            "seconds": round(time.perf_counter() - t0, 2), "weights": cfg.get("weights") or "random",
            "path": str(path), **extra,
        }  # fmt: skip
        print(json.dumps(row))
        rows.append(row)
    return rows


def parse_indices(spec: Any) -> list[int]:
    """``"a:b"``, ``"7"``, ``7`` or a list of ints -> dataset indices."""
    if isinstance(spec, int):
        return [spec]
    if isinstance(spec, list | tuple):
        return [int(i) for i in spec]
    if isinstance(spec, str) and ":" in spec:
        a, b = spec.split(":", 1)
        return list(range(int(a or 0), int(b or DATASET_SIZE)))
    if isinstance(spec, str) and spec.strip().isdigit():
        return [int(spec)]
    raise ValueError(f"quality_options.indices must be 'a:b', an int or a list of ints, got {spec!r}")


def quality(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Generate the dataset edits with the dense and the SIGE model, then PSNR / LPIPS / FID."""
    from sige.bench import append_rows, provenance
    from sige.data import data_path

    model_cfg, device, dtype, model, schedule, seq = _setup(cfg)
    opts = model_cfg.get("quality_options") or {}
    metrics = list(opts.get("metrics", ["psnr", "lpips", "fid"]))
    unknown = set(metrics) - {"psnr", "lpips", "fid"}
    if unknown:
        raise ValueError(f"unknown quality metrics {sorted(unknown)}; use psnr, lpips, fid")
    reference = opts.get("reference", "gt")
    if reference not in ("gt", "original"):
        raise ValueError(f"quality_options.reference must be 'gt' or 'original', got {reference!r}")
    indices = parse_indices(opts.get("indices", f"0:{DATASET_SIZE}"))
    res, seed = int(model_cfg["resolution"]), int(opts.get("seed", 0))
    edit_cfg = {
        "name": "church_sdedit",
        "kind": "dataset",
        "manifest": "lsun_church_sdedit",
        "folder": "church_outdoor_sdedit",
    }
    edit_cfg.update({k: v for k, v in (cfg.get("edit") or {}).items() if k in ("manifest", "folder") and v})
    if "lpips" in metrics or "fid" in metrics:  # fail before hours of sampling when weights are missing
        from sige.metrics.weights import resolve

        need: dict[str, Any] = {}
        if "lpips" in metrics:
            need["alexnet"] = opts.get("alexnet")
        if "fid" in metrics:
            need["lsun_church_fid_stats"] = opts.get("fid_stats")
        resolve(need)
    out_root = Path(opts.get("out_dir", "results/quality")) / model_cfg["name"]
    folders = {mode: out_root / mode for mode in ("dense", "sige")}
    for idx in indices:
        name = f"{idx:03d}"
        todo = [m for m, f in folders.items() if not (f / f"{name}.png").is_file()]
        if not todo:
            continue
        case = load_edit(
            {**edit_cfg, "index": idx}, res, float(model_cfg["edit_eps"]), int(model_cfg["mask_dilate_radius"])
        )
        for mode in todo:
            out, _ = _edit_one(model, model_cfg, schedule, seq, case, mode, seed, device, dtype)
            save_png(out, folders[mode] / f"{name}.png")
    root = Path(data_path(edit_cfg["manifest"], edit_cfg["folder"]))
    names = [f"{i:03d}" for i in indices if reference == "original" or i < GT_FILES]
    if not names:
        raise ValueError("no selected index has a ground truth (files 000-422); use reference=original")
    mask_root = root / "masks" if opts.get("masked") else None
    rows = []
    for mode in ("dense", "sige") if reference == "gt" else ("sige",):
        ref_root = root / "gt" if reference == "gt" else folders["dense"]
        row: dict[str, Any] = {"model": model_cfg["name"], "variant": "original" if mode == "dense" else "sige",
                               "reference": reference, "masked": bool(mask_root), "images": len(names)}  # fmt: skip
        if "psnr" in metrics:
            from sige.metrics import psnr_folders

            p = psnr_folders(folders[mode], ref_root, names, mask_root)
            row.update(psnr=round(p["mean"], 4), psnr_std=round(p["std"], 4))
        if "lpips" in metrics:
            from sige.metrics.lpips import lpips_folders

            row["lpips"] = round(
                lpips_folders(folders[mode], ref_root, names, mask_root, opts.get("alexnet"))["mean"], 5
            )
        if "fid" in metrics:
            from sige.metrics.fid import lsun_church_fid

            row["fid"] = round(lsun_church_fid(str(folders[mode]), opts.get("fid_stats"), opts.get("inception")), 3)
        row.update(weights=cfg.get("weights") or "random", **provenance({"task": "quality", "options": opts}))
        print(json.dumps({k: v for k, v in row.items() if k != "settings"}))
        rows.append(row)
    append_rows(opts.get("output", "results/quality.csv"), rows, columns=list(rows[0]))
    return rows
