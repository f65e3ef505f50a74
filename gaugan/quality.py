"""``task=quality``: mIoU (DRN-D-105), FID, PSNR and LPIPS of the original generator and its SIGE version.

    python scripts/run.py task=quality model=gaugan_cityscapes edit=cityscapes_edit weights=pretrained
    python scripts/run.py task=quality model=gan_compression_cityscapes edit=cityscapes_edit weights=pretrained \
        edit.image_ids=[0,1,2] model.quality_options.metrics=[miou,psnr]

For every edit of the selection both generators run on the edited map (the SIGE one after a full pass on
the original map); images go to ``<out_dir>/<edit>/{original_model,sige}/<name>.png`` (reused when present).
Metrics, one row each (printed as JSON and appended to ``results/quality.csv``):

* ``miou``: DRN-D-105 on the generated 256x512 images against the edited label maps (train ids), one
  confusion matrix over the set (see :mod:`gaugan.drn`); ``miou_masked: true`` counts only the pixels of
  the edit's mask (the set's ``masks/<synthetic_id>.npy``, else the dilated difference mask);
* ``fid``: generated folder vs the set's real photos (``images/``; clean-fid resizing) via ``sige.metrics``;
  needs the benchmark set (not computed for single example edits);
* ``psnr`` / ``lpips``: SIGE images against the original generator's images of the same edits.

All weights are checked before any image is generated; what is missing is reported in one message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaugan.tasks import edit_samples, load_model, prepare, resize_map, run_edit, save_png, to_image

VARIANTS = ("original_model", "sige")
METRICS = ("miou", "fid", "psnr", "lpips")
QUALITY_CSV = "results/quality.csv"
COLUMNS = ["model", "edit", "variant", "metric", "value", "std", "count", "pixels", "reference", "masked", "weights",
           "settings", "settings_key", "command", "machine", "torch", "code_version", "timestamp"]  # fmt: skip


def drn_weights_path(given: str | None) -> Path:
    from gaugan.checkpoints import MANIFEST, pretrained_path

    if given:
        p = Path(given)
        if not p.is_file():
            raise FileNotFoundError(f"drn_weights={given!r}: no such file")
        return p
    try:
        return pretrained_path("gaugan", name="drn-d-105_ms_cityscapes.pth")
    except FileNotFoundError as e:
        raise FileNotFoundError(
            "mIoU needs DRN-D-105 trained on Cityscapes (drn-d-105_ms_cityscapes.pth, item of "
            f"datasets/{MANIFEST}.yaml, Google Drive id 1O-BH64Rvc40cT_SQrvbnebTWRwC74TJp): pass "
            "model.quality_options.drn_weights=PATH or put it under $SIGE_DATA/gaugan/"
        ) from e


def preflight(cfg: Mapping[str, Any], metrics: list[str]) -> dict[str, Any]:
    """Resolve every weight file the run needs; one FileNotFoundError lists all that are missing."""
    from gaugan.checkpoints import resolve_weights

    model_cfg = cfg["model"]
    opts = dict(model_cfg.get("quality_options") or {})
    found: dict[str, Any] = {}
    problems: list[str] = []
    try:
        found["generator"] = resolve_weights(
            cfg.get("weights"), model_cfg.get("architecture", "gaugan"), model_cfg.get("config_str"),
            model_cfg.get("checkpoint"),
        )  # fmt: skip
        if found["generator"] is None:
            problems.append("generator weights: weights=null means random weights, which make quality meaningless; "
                            "pass weights=pretrained or weights=PATH")  # fmt: skip
    except FileNotFoundError as e:
        problems.append(f"generator weights: {e}")
    if "miou" in metrics:
        try:
            found["drn"] = drn_weights_path(opts.get("drn_weights"))
        except FileNotFoundError as e:
            problems.append(str(e))
    try:
        from sige.metrics import MissingWeightsError, resolve
        from sige.metrics.weights import bundled_inception

        if "lpips" in metrics:
            found["alexnet"] = resolve({"alexnet": opts.get("alexnet")})["alexnet"]
        if "fid" in metrics and not opts.get("inception"):
            try:
                found["inception"] = resolve({"inception": None}, fetch=False)["inception"]
            except MissingWeightsError:
                found["inception"] = bundled_inception() or resolve({"inception": None})["inception"]
        elif "fid" in metrics:
            found["inception"] = resolve({"inception": opts["inception"]})["inception"]
    except FileNotFoundError as e:  # MissingWeightsError lists every metric weight file
        problems.append(str(e))
    if problems:
        raise FileNotFoundError("task=quality cannot run; missing:\n- " + "\n- ".join(problems))
    return found


def quality(cfg: Mapping[str, Any]) -> list[dict]:
    from gaugan.drn import confusion, load_drn, miou, predict
    from gaugan.labels import to_train_ids

    model_cfg, edit = cfg["model"], cfg["edit"]
    opts = dict(model_cfg.get("quality_options") or {})
    metrics = list(opts.get("metrics", METRICS))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown quality metrics {unknown}; choose from {list(METRICS)}")
    weights = preflight(cfg, metrics) if not opts.get("allow_random_weights") else {}
    device, dtype = cfg["device"]["name"], getattr(torch, cfg.get("dtype", "float32"))
    out = Path(opts.get("out_dir") or f"results/quality/{model_cfg['name']}") / edit["name"]
    model, weights_label = load_model(model_cfg, cfg.get("weights"), device, dtype)

    # 1. images (and what the metrics need per edit)
    samples = []
    for sample in edit_samples(edit, model.output_size):
        paths = {v: out / v / f"{sample.name}.png" for v in VARIANTS}
        original, edited, masks = prepare(sample, model, model_cfg.get("mask"), None, device, dtype)
        if not (opts.get("reuse_images", True) and all(p.is_file() for p in paths.values())):
            images = run_edit(model, original, edited, masks.pyramid, opts.get("block_grid", "trimmed"))
            for v in VARIANTS:
                save_png(to_image(images[v][0]), paths[v])
        label = torch.nn.functional.interpolate(
            torch.from_numpy(np.asarray(sample.edited_label, dtype=np.int64))[None, None].float(),
            size=model.output_size, mode="nearest",
        )[0, 0].long().numpy()  # fmt: skip
        mask = masks.mask.cpu().numpy()
        if sample.mask_path is not None:  # the benchmark set's own mask (what the original's masked mIoU used)
            mask = resize_map(np.load(sample.mask_path).astype(np.uint8), model.output_size).astype(bool)
        samples.append((sample, paths, label, mask))
    del model

    from PIL import Image

    def read(p: Path) -> np.ndarray:
        return np.asarray(Image.open(p).convert("RGB"))

    rows: list[dict] = []
    masked = bool(opts.get("miou_masked", False))
    if "miou" in metrics:
        drn = load_drn(weights["drn"], device) if "drn" in weights else None
        if drn is None:  # allow_random_weights (tests): an untrained DRN, plumbing only
            from gaugan.drn import DRNSeg

            drn = DRNSeg(**opts.get("drn_arch", {})).eval()
        for v in VARIANTS:
            hist = np.zeros((19, 19), dtype=np.int64)
            for _, paths, label, mask in samples:
                pred = predict(drn, read(paths[v]), device)[0]
                hist += confusion(pred, to_train_ids(label), mask=mask if masked else None)
            value, _ = miou(hist)
            rows.append({"variant": v, "metric": "miou", "value": value, "count": len(samples),
                         "reference": "edited labels", "masked": masked, "pixels": int(hist.sum())})  # fmt: skip
    if "fid" in metrics:
        real = {s.image_path.parent for s, *_ in samples if s.image_path is not None}
        if len(real) != 1:
            print(json.dumps({"metric": "fid", "skipped": "FID needs the benchmark set's real images "
                              "(edit=cityscapes_edit)"}))  # fmt: skip
        else:
            from sige.metrics.fid import fid  # (``from sige.metrics import fid`` recurses in its __getattr__)

            ref = real.pop()
            for v in VARIANTS:
                value = fid(out / v, ref_folder=ref, inception=weights.get("inception"))
                rows.append({"variant": v, "metric": "fid", "value": value, "count": len(samples),
                             "reference": "real images", "masked": False})  # fmt: skip
    names = [s.name for s, *_ in samples]
    if "psnr" in metrics:
        from sige.metrics import psnr_folders

        r = psnr_folders(out / "sige", out / "original_model", names)
        rows.append({"variant": "sige", "metric": "psnr", "value": r["mean"], "std": r["std"], "count": r["count"],
                     "reference": "original_model", "masked": False})  # fmt: skip
    if "lpips" in metrics:
        from sige.metrics import lpips_folders

        r = lpips_folders(out / "sige", out / "original_model", names, alexnet=weights.get("alexnet"), device=device)
        rows.append({"variant": "sige", "metric": "lpips", "value": r["mean"], "std": r["std"], "count": r["count"],
                     "reference": "original_model", "masked": False})  # fmt: skip
    return _write(cfg, rows, weights_label)


def _write(cfg: Mapping[str, Any], rows: list[dict], weights_label: str) -> list[dict]:
    from sige.bench import append_rows, provenance

    model_cfg, edit = cfg["model"], cfg["edit"]
    settings = {"task": "quality", "model": {k: v for k, v in model_cfg.items() if k not in ("efficiency",)},
                "edit": dict(edit), "weights": cfg.get("weights"), "dtype": cfg.get("dtype")}  # fmt: skip
    common = {"model": model_cfg["name"], "edit": edit["name"], "weights": weights_label, **provenance(settings)}
    rows = [{**common, "std": "", **r} for r in rows]
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k != "settings"}))
    append_rows((model_cfg.get("quality_options") or {}).get("csv") or QUALITY_CSV, rows, COLUMNS)
    return rows
