"""The one quality driver: the model's family generates the images (:class:`sigebench.family.QualitySet`), this
module computes PSNR, LPIPS, FID and the family's own metrics (GauGAN's mIoU) and stores one row per
(variant, metric, reference) in ``results/quality.csv`` (shards under ``results/rows/quality/``).

* Random weights make quality numbers meaningless: a run with ``weights=null`` is refused unless
  ``task.allow_random_weights=true``, and its rows then say ``random_weights: true``.
* Every weight file a metric needs is resolved before any image is generated (one message lists what is
  missing).
* Generated images are cached in ``<out_dir>/<model>/<key>/`` where ``key`` hashes everything that changes
  them (model config with sampler and mask settings, the checkpoint file, seed, block grid, dtype, device, the
  edit set), so a later run with other settings never reuses them; the selection (indices, image ids) only
  chooses which images are scored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sigebench.config import ConfigError
from sigebench.family import QualitySet
from sigebench.provenance import provenance, settings_key
from sigebench.results import ResultsStore
from sigebench.tasks import absolute_output
from sigebench.weights import resolve_weights

BASE_METRICS = ("psnr", "lpips", "fid")
COLUMNS = ["model", "edit", "variant", "metric", "value", "std", "count", "reference", "masked", "weights",
           "random_weights", "images", "settings", "settings_key", "command", "machine", "cpu_features", "load_1m",
           "torch", "code_version", "timestamp"]  # fmt: skip
SELECTION_KEYS = ("indices", "image_ids", "index")


def _file_identity(path: Path | None) -> Any:
    if path is None:
        return None
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def image_settings(cfg: Mapping[str, Any], weights: Path | None) -> dict[str, Any]:
    """Everything that changes the generated images (the key of their cache folder)."""
    task = cfg["task"]
    return {
        "model": cfg["model"],
        "weights": _file_identity(weights),
        "edit": {k: v for k, v in cfg["edit"].items() if k not in SELECTION_KEYS},
        "seed": task.get("seed"),
        "block_grid": task.get("block_grid"),
        "dtype": cfg.get("dtype"),
        "device": cfg["device"]["name"],
    }


def run_quality(cfg: Mapping[str, Any], family: Any) -> list[dict[str, Any]]:
    """``task=quality`` for a validated config (see :func:`sigebench.tasks.quality`)."""
    from sigebench.metrics import resolve

    task, model = cfg["task"], cfg["model"]
    metrics = list(task.get("metrics") or family.QUALITY_METRICS)
    known = (*BASE_METRICS, *getattr(family, "EXTRA_METRICS", ()))
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ConfigError(
            f"task.metrics: unknown metric(s) {unknown} for the {model['family']} family; choose from {list(known)}"
        )
    weights = resolve_weights(cfg.get("weights"), model.get("checkpoint"), model["name"])
    if weights is None and not task.get("allow_random_weights"):
        raise ConfigError(
            f"task=quality with random weights (weights={cfg.get('weights')!r}) measures noise, not the model: pass "
            "weights=pretrained or weights=PATH (task.allow_random_weights=true runs it anyway, labelled so)"
        )
    need: dict[str, Any] = {}
    if "lpips" in metrics:
        need["alexnet"] = task.get("alexnet")
    if "fid" in metrics:
        need["inception"] = task.get("inception")
    resolve(need)  # everything missing in one message, before any image is generated
    if hasattr(family, "quality_preflight"):  # the family's own files (e.g. GauGAN's DRN for mIoU)
        family.quality_preflight(cfg, metrics)
    settings = image_settings(cfg, weights)
    key = settings_key(settings)
    folder = Path(absolute_output(task.get("out_dir", "results/quality"))) / model["name"] / key
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings, indent=1, sort_keys=True, default=str))
    qs: QualitySet = family.quality_set(cfg, folder)
    rows = _metric_rows(cfg, qs, metrics, need)
    run = {"task": "quality", "images": settings, "metrics": metrics, "task_cfg": task}
    common = {
        "model": model["name"], "edit": cfg["edit"]["name"], "weights": qs.weights, "random_weights": weights is None,
        "images": str(folder), **provenance(run),
    }  # fmt: skip
    rows = [{**common, **r} for r in rows]
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k != "settings"}), flush=True)
    store = ResultsStore(absolute_output(task.get("output", "results/quality.csv")), columns=COLUMNS)
    store.write(rows)
    store.export_csv()
    return rows


def _metric_rows(cfg: Mapping[str, Any], qs: QualitySet, metrics: list[str], weights: dict[str, Any]) -> list[dict]:
    from sigebench.metrics import psnr_folders

    task = cfg["task"]
    device = cfg["device"]["name"]
    masked = bool(task.get("masked")) and qs.masks is not None
    rows: list[dict[str, Any]] = []
    for variant, ref in qs.compare:
        names = qs.compare_names.get(ref, qs.names)
        masks = qs.masks if masked else None
        if "psnr" in metrics:
            r = psnr_folders(qs.variants[variant], qs.references[ref], names, masks)
            rows.append({"variant": variant, "metric": "psnr", "value": r["mean"], "std": r["std"], "count": r["count"],
                         "reference": ref, "masked": masked})  # fmt: skip
        if "lpips" in metrics:
            from sigebench.metrics.lpips import lpips_folders

            r = lpips_folders(qs.variants[variant], qs.references[ref], names, masks, task.get("alexnet"), device)
            rows.append({"variant": variant, "metric": "lpips", "value": r["mean"], "std": r["std"],
                         "count": r["count"], "reference": ref, "masked": masked})  # fmt: skip
    if "fid" in metrics:
        if qs.fid_reference is None:
            print(json.dumps({"metric": "fid", "skipped": "this edit set has no FID reference (real images or "
                              "statistics)"}))  # fmt: skip
        else:
            from sigebench.metrics.fid import fid

            is_stats = qs.fid_reference.suffix == ".npz"
            for variant, folder in qs.variants.items():
                value = fid(
                    folder, qs.names, ref_folder=None if is_stats else qs.fid_reference,
                    ref_names=None if is_stats else qs.fid_reference_names,
                    ref_stats=qs.fid_reference if is_stats else None, inception=weights.get("inception"),
                )  # fmt: skip
                rows.append({"variant": variant, "metric": "fid", "value": value, "count": len(qs.names),
                             "reference": "statistics" if is_stats else "real", "masked": False})  # fmt: skip
    for metric in metrics:
        if metric in qs.extra:
            for variant, folder in qs.variants.items():
                rows.append({"variant": variant, "metric": metric, **qs.extra[metric](variant, folder, qs.names)})
    return rows
