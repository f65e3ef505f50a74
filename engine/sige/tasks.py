"""Task runners behind ``scripts/run.py`` (the benchmark contract).

``efficiency``: the model config's ``efficiency`` callable measures every requested variant on one
edit and returns rows; this module adds provenance, skips rows already measured for the same
settings, code version and machine (unless ``force``), prints one JSON object per row and appends
the rows to the output CSV.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch

from sige.bench import Timing, append_rows, code_version, machine_id, provenance, read_rows


def _plain(cfg: Any) -> Any:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        pass
    return cfg


def resolve_threads(requested: Any) -> int:
    """Thread count for this job: ``auto`` = all cores; under a parallel launcher (joblib) the cores are
    split between the concurrent jobs so that they do not oversubscribe the machine."""
    cores = os.cpu_count() or 1
    jobs = 1
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            launcher = HydraConfig.get().launcher
            if "joblib" in str(launcher.get("_target_", "")).lower():
                n = int(launcher.get("n_jobs", 1) or 1)
                jobs = cores if n < 0 else max(1, n)
    except (ImportError, ValueError, AttributeError):
        pass
    share = max(1, cores // jobs)
    if requested in (None, "auto"):
        return share
    requested = int(requested)
    if jobs > 1 and requested * jobs > cores:
        print(f"note: {jobs} parallel jobs on {cores} cores: using {share} thread(s) per job instead of {requested}")
        return share
    return requested


def row_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that determine a measurement (what a resumed sweep compares)."""
    return {
        "task": "efficiency",
        "model": {k: v for k, v in cfg["model"].items() if k != "efficiency"},
        "edit": dict(cfg["edit"]),
        "component": cfg.get("component"),
        "device": cfg["device"]["name"],
        "threads": cfg["threads"],
        "dtype": cfg["dtype"],
        "weights": cfg.get("weights"),
        "variants": list(cfg["variants"]),
        "timing": dict(cfg["timing"]),
    }


def already_measured(path: str, settings: Mapping[str, Any]) -> list[dict[str, str]]:
    """Rows in ``path`` with the same settings, code version and machine."""
    from sige.bench import settings_key

    key, version, machine = settings_key(settings), code_version(), machine_id()
    return [
        r
        for r in read_rows(path)
        if r.get("settings_key") == key and r.get("code_version") == version and r.get("machine") == machine
    ]


def efficiency(cfg: Any) -> list[dict[str, Any]]:
    """Run the efficiency benchmark described by a composed config (see configs/config.yaml)."""
    from hydra.utils import get_method

    cfg = _plain(cfg)
    cfg["threads"] = resolve_threads(cfg["threads"])
    torch.set_num_threads(cfg["threads"])
    settings = row_settings(cfg)
    if not cfg.get("force"):
        done = already_measured(cfg["output"], settings)
        if done:
            for r in done:
                print(json.dumps({**{k: r[k] for k in r if k not in ("settings",)}, "reused": True}))
            return done
    dtype = getattr(torch, cfg["dtype"])
    timing = Timing(**cfg["timing"])
    measure = get_method(cfg["model"]["efficiency"]["_target_"])
    rows = measure(
        model_cfg=cfg["model"],
        edit=cfg["edit"],
        component=cfg.get("component"),
        variants=list(cfg["variants"]),
        timing=timing,
        device=cfg["device"]["name"],
        dtype=dtype,
        weights=cfg.get("weights"),
    )
    common = {
        "model": cfg["model"]["name"],
        "component": cfg.get("component"),
        "edit": cfg["edit"]["name"] + (f"@{cfg['edit']['area']}" if cfg["edit"].get("kind") == "synthetic" else ""),
        "threads": torch.get_num_threads(),
        "device": cfg["device"]["name"],
        "dtype": cfg["dtype"],
        "weights": cfg.get("weights") or "random",
        **provenance(settings),
    }
    rows = [{**common, **r} for r in rows]
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k != "settings"}))
    append_rows(cfg["output"], rows)
    return rows


def model_task(cfg: Any) -> Any:
    """Run a model-specific task (``generate``, ``quality``): the model config's ``<task name>._target_``
    is called with the whole composed config as a plain dict."""
    from hydra.utils import get_method

    cfg = _plain(cfg)
    name = cfg["task"]["name"]
    spec = cfg["model"].get(name)
    if not spec:
        raise ValueError(
            f"model {cfg['model']['name']!r} has no {name!r} task; it offers: "
            + ", ".join(k for k in ("efficiency", "generate", "quality") if cfg["model"].get(k))
        )
    cfg["threads"] = resolve_threads(cfg["threads"])
    torch.set_num_threads(cfg["threads"])
    return get_method(spec["_target_"])(cfg)
