"""The tasks behind ``scripts/run.py`` (``task=efficiency | generate | quality``), one for every model family.

``efficiency``: the model's family prepares the case (:mod:`sigebench.family`), :func:`sigebench.variants.
measure_variants` measures every requested variant, provenance is added, rows already measured for the same
settings, code version and machine are reused (unless ``force``), one JSON object per row is printed and the
rows are stored as one shard (:mod:`sigebench.results`); the CSV is derived from the shards.
``generate`` and ``quality`` dispatch to the family (quality through :mod:`sigebench.quality`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import torch

from sigebench.config import ConfigError, check_keys, parse_threads, plain, validate
from sigebench.family import load_family
from sigebench.launch_env import allotted_cores, job_command, launcher_name
from sigebench.provenance import code_version, machine_id, provenance, settings_key
from sigebench.results import COLUMNS, ResultsStore
from sigebench.variants import Timing, measure_variants


def resolve_threads(requested: Any) -> int:
    """Thread count for this job: ``auto`` = the cores its launcher allotted (:mod:`sigebench.launch_env`: Ray's
    reserved CPUs, SLURM's cpus-per-task, the machine split between joblib's parallel jobs, or the whole machine).
    A request above the allotment would take cores of other jobs: it is lowered to the allotment, with a note."""
    requested = parse_threads(requested)
    cores, setting = allotted_cores()
    if requested == "auto":
        return cores
    if setting is not None and requested > cores:
        print(f"note: threads={requested} but this job has {cores} core(s) ({setting}): using {cores}", file=sys.stderr)
        return cores
    return requested


def absolute_output(path: str) -> str:
    """A relative ``output`` is relative to the folder the command was started in (Hydra's ``runtime.cwd``), not
    to the working folder of the process that runs the job (a Ray worker's, a SLURM job's)."""
    from hydra.utils import to_absolute_path

    return to_absolute_path(path)


def _component(cfg: Mapping[str, Any], family) -> str:
    component = cfg.get("component") or family.COMPONENTS[0]
    if component not in family.COMPONENTS:
        raise ConfigError(
            f"model {cfg['model']['name']!r} has no component {component!r}; its components: "
            + ", ".join(family.COMPONENTS)
        )
    return component


def edit_label(edit: Mapping[str, Any]) -> str:
    """The ``edit`` column: the edit's name, ``synthetic@<area>`` for synthetic strokes."""
    return f"{edit['name']}@{edit['area']}" if edit.get("kind") == "synthetic" else str(edit["name"])


def row_settings(cfg: Mapping[str, Any], component: str) -> dict[str, Any]:
    """The settings that determine a measurement (what a resumed sweep compares)."""
    return {
        "task": "efficiency",
        "model": dict(cfg["model"]),
        "edit": dict(cfg["edit"]),
        "component": component,
        "device": cfg["device"]["name"],
        "threads": cfg["threads"],
        "dtype": cfg["dtype"],
        "weights": cfg.get("weights"),
        "variants": list(cfg["variants"]),
        "timing": dict(cfg["timing"]),
    }


def prepare_config(cfg: Any) -> tuple[dict[str, Any], Any]:
    """Plain, validated config with the thread count resolved and applied; and the model's family."""
    cfg = plain(cfg)
    validate(cfg)
    family = load_family(cfg["model"]["family"], cfg["families"])
    check_keys(cfg["model"], set(family.MODEL_KEYS), "model.")
    cfg["threads"] = resolve_threads(cfg["threads"])
    torch.set_num_threads(cfg["threads"])
    return cfg, family


def ordered(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with the contract's columns first (in their order), then the others."""
    return {**{k: row[k] for k in COLUMNS if k in row}, **{k: v for k, v in row.items() if k not in COLUMNS}}


def _print(rows: list[dict[str, Any]], **extra: Any) -> None:
    for r in rows:
        print(json.dumps({**{k: v for k, v in r.items() if k not in ("settings", "row_id")}, **extra}), flush=True)


def efficiency(cfg: Any) -> list[dict[str, Any]]:
    """Measure one edit of one model component (see the module docstring)."""
    cfg, family = prepare_config(cfg)
    component = _component(cfg, family)
    settings = row_settings(cfg, component)
    store = ResultsStore(absolute_output(cfg["output"]))
    if not cfg.get("force"):
        done = store.measured(settings_key(settings), code_version(), machine_id())
        if done:
            _print(done, reused=True)
            return done
    dtype = getattr(torch, cfg["dtype"])
    device = cfg["device"]["name"]
    # reduced precision: built in float32, converted after the float output is taken (psnr_vs_float32_db)
    case = family.prepare(cfg["model"], cfg["edit"], component, device, torch.float32, cfg.get("weights"))
    measured = measure_variants(
        case.model, case.original, case.edited, case.masks, list(cfg["variants"]), Timing(**cfg["timing"]),
        device, case.configure, case.fidelity, dtype,
    )  # fmt: skip
    common = {
        "model": cfg["model"]["name"],
        "component": component,
        "edit": edit_label(cfg["edit"]),
        "edited_fraction": case.edited_fraction,
        "threads": torch.get_num_threads(),
        "device": device,
        "dtype": cfg["dtype"],
        "weights": case.weights,
        "launcher": launcher_name(),
        **provenance(settings, job_command()),
    }
    rows = [ordered({**common, **r, **case.columns}) for r in measured]
    _print(rows)
    store.write(rows)
    store.export_csv()
    return rows


def generate(cfg: Any) -> Any:
    """``task=generate``: the family's generate (images of one edit, dense and sparse)."""
    cfg, family = prepare_config(cfg)
    if not hasattr(family, "generate"):
        raise ConfigError(f"model {cfg['model']['name']!r} ({cfg['model']['family']} family) has no generate task")
    return family.generate(cfg)


def quality(cfg: Any) -> Any:
    """``task=quality``: the family generates the images, :mod:`sigebench.quality` computes the metrics."""
    from sigebench.quality import run_quality

    cfg, family = prepare_config(cfg)
    if not hasattr(family, "quality_set"):
        raise ConfigError(f"model {cfg['model']['name']!r} ({cfg['model']['family']} family) has no quality task")
    return run_quality(cfg, family)
