"""The schema of the composed config (``configs/config.yaml``) and the checks every task runs first.

The schema is registered with Hydra's ConfigStore as ``schema`` (the first entry of the defaults list), so
an unknown top-level key (``+timming.repeats=2``) or a value of the wrong type (``timing.repeats=abc``) is an
error of the composition, naming the key, before anything runs. :func:`validate` then checks what a schema
cannot: that the model and the edit belong together, the component exists, threads and dtype make sense.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from sigebench.variants import Timing

DTYPES = ("float32", "bfloat16", "float16")
EDIT_KEYS = {
    "name", "kind", "families", "manifest", "original", "edited", "mask", "area", "seed", "prompt", "index",
    "indices", "folder", "root", "image_ids", "symmetric", "reverse", "inpainting",
}  # fmt: skip
TASK_KEYS = {
    "efficiency": {"name", "_target_"},
    "generate": {"name", "_target_", "out_dir", "variants", "seed", "block_grid", "prompt", "negative_prompt",
                 "refiner_weights"},
    "throughput": {"name", "_target_", "batch_sizes", "max_batch", "memory_fraction", "edits", "output"},
    "memory": {"name", "_target_", "output", "timeout_s"},
    "quality": {"name", "_target_", "out_dir", "output", "metrics", "references", "masked", "allow_random_weights",
                "block_grid", "seed", "fid_stats", "inception", "alexnet", "drn_weights"},
}  # fmt: skip
VARIANTS = ("original", "sige", "sige_fast")


class ConfigError(ValueError):
    """A setting that cannot work; the message names the setting and what to use instead."""


@dataclass
class Schema:
    task: Any = MISSING
    model: Any = MISSING
    edit: Any = MISSING
    device: Any = MISSING
    threads: Any = "auto"
    dtype: str = "float32"
    component: str | None = None
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    weights: str | None = None
    output: str = "results/efficiency.csv"
    force: bool = False
    timing: Timing = field(default_factory=Timing)
    families: dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(name="schema", node=Schema)


def plain(cfg: Any) -> Any:
    """A composed config as plain dicts and lists (interpolations resolved); a required value that was not
    given (``???``, e.g. ``edit=custom`` without ``edit.original=PATH``) is a :class:`ConfigError` naming it."""
    from omegaconf.errors import MissingMandatoryValue

    if OmegaConf.is_config(cfg):
        try:
            return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as e:
            key = getattr(e, "full_key", None) or "a setting"
            raise ConfigError(f"{key} is required but was not given: add {key}=... to the command") from None
    return cfg


def parse_threads(value: Any) -> int | str:
    """``threads`` as a positive int or ``"auto"`` (all cores, split between parallel jobs)."""
    if value in (None, "auto"):
        return "auto"
    if isinstance(value, bool):
        raise ConfigError(f"threads must be a positive integer or 'auto', got {value!r}")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"threads must be a positive integer or 'auto', got {value!r}") from None
    if n < 1 or (isinstance(value, float) and value != n):
        raise ConfigError(f"threads must be a positive integer or 'auto', got {value!r}")
    return n


def check_keys(given: Mapping[str, Any], known: set[str], where: str) -> None:
    """Refuse keys nobody reads (``+edit.aera=0.1``), naming them and the known ones."""
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(where + k for k in unknown)}; known: {', '.join(sorted(known))}"
        )


def validate(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the setting when the composed config cannot give correct rows."""
    from dataclasses import fields

    check_keys(cfg, {f.name for f in fields(Schema)}, "")
    check_keys(cfg.get("timing") or {}, {f.name for f in fields(Timing)}, "timing.")
    model, edit = cfg["model"], cfg["edit"]
    check_keys(edit, EDIT_KEYS, "edit.")
    task = cfg.get("task") or {}
    if task.get("name") in TASK_KEYS:
        check_keys(task, TASK_KEYS[task["name"]], "task.")
    name = model.get("name", "?")
    family = model.get("family")
    if not family:
        raise ConfigError(f"model {name!r} names no family (configs/model/*.yaml need `family:`)")
    families = edit.get("families") or []
    if "all" not in families and family not in families:
        raise ConfigError(
            f"edit {edit.get('name')!r} is not an edit of model {name!r}: the edit is for the "
            f"{' / '.join(families) or '(no)'} famil{'ies' if len(families) != 1 else 'y'}, the model is a {family} "
            "model (pick an edit whose `families` lists it, or edit=synthetic / edit=custom)"
        )
    parse_threads(cfg.get("threads"))
    if cfg.get("dtype") not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {cfg.get('dtype')!r}")
    variants = cfg.get("variants") or []
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise ConfigError(f"variants must be a non-empty list of {', '.join(VARIANTS)}, got {list(variants)}")
    t = cfg.get("timing") or {}
    if int(t.get("repeats", 1)) < 1 or int(t.get("warmup", 0)) < 0:
        raise ConfigError(
            f"timing.repeats must be >= 1 and timing.warmup >= 0, got {t.get('repeats')}, {t.get('warmup')}"
        )
    for key in ("min_time_s", "max_time_s"):
        if t.get(key) is not None and float(t[key]) < 0:
            raise ConfigError(f"timing.{key} must be >= 0, got {t[key]}")
    device = (cfg.get("device") or {}).get("name")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ConfigError(f"device must be cpu or cuda, got {device!r}")
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device={device}: no CUDA device is available here; use device=cpu")
    if device == "cpu" and cfg["dtype"] != "float32":
        check_cpu_dtype(cfg["dtype"])


# CPU features that make a reduced-precision dtype native (elsewhere oneDNN emulates it, slower than float32)
NATIVE_CPU_DTYPE = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "amx_fp16")}


def check_cpu_dtype(dtype: str) -> None:
    """Refuse a reduced-precision dtype on a CPU that has no native support for it (it would be measured
    slower than float32, a result about emulation, not about the engine)."""
    from sigebench.provenance import cpu_features

    have = set(cpu_features().split())
    need = NATIVE_CPU_DTYPE[dtype]
    if not have & set(need):
        raise ConfigError(
            f"dtype={dtype} on this CPU: it has none of {', '.join(need)} (features: {' '.join(sorted(have)) or '?'}), "
            f"so {dtype} would be emulated and slower than float32; use dtype=float32 here, or a CPU with "
            f"{' or '.join(need)}"
        )
