"""Job lists (``configs/reproduce/*.yaml``, ``configs/quality/*.yaml``) and composing one job's config, both
through Hydra's compose API (never a raw YAML read)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import sigebench.config  # noqa: F401  (registers the schema the primary config names)
from sigebench.config import plain
from sigebench.provenance import ROOT

CONFIGS = ROOT / "configs"


@contextmanager
def hydra_context() -> Iterator[None]:
    """Hydra initialised on ``configs/`` (re-entrant: inside an active Hydra app or context it does nothing)."""
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        yield


def job_list_names(kind: str) -> list[str]:
    """Names of the job lists of ``kind`` (``reproduce`` or ``quality``): the files in ``configs/<kind>/``."""
    return sorted(p.stem for p in (CONFIGS / kind).glob("*.yaml"))


def _compose_list(kind: str, name: str) -> tuple[str, Any]:
    """(where, composed job list) of a list name of ``configs/<kind>/`` or the path of a YAML file elsewhere."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file() and path.resolve().parent != (CONFIGS / kind).resolve():
        if GlobalHydra.instance().is_initialized():
            raise RuntimeError(f"job list {path} (outside configs/{kind}/) cannot be read inside a running Hydra app")
        with initialize_config_dir(config_dir=str(path.resolve().parent), version_base="1.3"):
            return str(path), plain(compose(config_name=path.stem))
    stem = path.stem
    if not (CONFIGS / kind / f"{stem}.yaml").is_file():
        raise FileNotFoundError(f"no job list configs/{kind}/{stem}.yaml (have: {', '.join(job_list_names(kind))})")
    with hydra_context():
        return f"configs/{kind}/{stem}.yaml", plain(compose(config_name=f"{kind}/{stem}"))


def load_jobs(kind: str, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Every job of the named lists (default: all of ``configs/<kind>/``; a name may also be the path of a job
    list elsewhere), each ``{"overrides": [...], ...}``."""
    jobs: list[dict[str, Any]] = []
    for name in list(names) if names else job_list_names(kind):
        where, cfg = _compose_list(kind, name)
        for job in cfg.get("jobs") or []:
            if not isinstance(job, dict) or not isinstance(job.get("overrides"), list):
                raise ValueError(f"{where}: every job needs an `overrides:` list, got {job!r}")
            jobs.append({**job, "list": where})
    return jobs


def compose_job(overrides: Sequence[str]) -> Any:
    """The composed config (DictConfig) of ``scripts/run.py <overrides>``."""
    with hydra_context():
        return compose(config_name="config", overrides=list(overrides))


def job_name(job: dict[str, Any]) -> str:
    return " ".join(job["overrides"])
