"""The one interface every model family implements, and how the harness finds a model's family.

A family is a module named in the ``families`` table of ``configs/config.yaml`` (``engine``:
:mod:`sigebench.engine_family`, ``diffusion``: ``diffusion.family``, ``gaugan``: ``gaugan.family``, ``latent``:
``sdxl.family``; add your own there). It defines:

* ``COMPONENTS``: the components a model of the family has (the first is the default), e.g. ``("unet",
  "encoder", "decoder")``;
* ``prepare(model_cfg, edit, component, device, dtype, weights) -> Case``: the model (random weights, or
  loaded as ``weights`` says), the original and edited inputs, the mask pyramid and how to configure the
  ``sige`` / ``sige_fast`` variants. One generic efficiency task, panel maker and throughput task serve
  every family through it;
* ``MODEL_KEYS``: the keys its model configs may have (anything else is a misspelling, refused up front);
* optionally ``generate(cfg) -> list[dict]`` (``task=generate``), and ``QUALITY_METRICS`` with
  ``quality_set(cfg, folder) -> QualitySet`` (``task=quality``: the family generates the images into
  ``folder``, keyed by everything that changes them; :mod:`sigebench.quality` computes every metric), and
  ``quality_preflight(cfg, metrics)`` to refuse a run whose own files are missing before any image is made.

``weights`` means the same everywhere (:func:`sigebench.weights.resolve_weights`): ``None`` = random
initialisation, ``"pretrained"`` = the model config's released checkpoint, anything else a path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from sige.nn import SIGEModel


@dataclass
class Display:
    """What the qualitative panel shows of a case: input images (``[H, W]`` or ``[H, W, 3]`` / ``[3, H, W]``
    arrays), the edit mask, and how a model output becomes an image."""

    original: np.ndarray
    edited: np.ndarray
    mask: np.ndarray
    size: tuple[int, int]  # (H, W) the active tiles are drawn at
    output: Callable[[torch.Tensor], np.ndarray] = lambda t: t[0, :3].float().cpu().numpy()


@dataclass
class Case:
    """One edit of one model component, ready to measure: full pass on ``original``, sparse on ``edited``."""

    model: SIGEModel
    original: tuple
    edited: tuple
    masks: dict[tuple[int, int], torch.Tensor]
    edited_fraction: float
    weights: str = "random"  # "random" or the checkpoint file used
    configure: Callable[[SIGEModel, str], None] | None = None  # per-variant set-up (block sizes, attention mode)
    fidelity: bool = False  # also report the PSNR of each sparse output against the dense one
    columns: dict[str, Any] = field(default_factory=dict)  # extra columns for the rows
    display: Display | None = None


@dataclass
class QualitySet:
    """Images a family generated for ``task=quality`` and what they are compared with.

    ``variants``: variant name (``original`` = the dense model, ``sige``) -> folder of ``<name>.png``;
    ``names``: the image names (the selection: metrics use exactly these); ``references``: reference name
    (``gt``, ``real``, ``original`` ...) -> folder, for PSNR / LPIPS; ``fid_reference``: a folder of real
    images or a clean-fid statistics file; ``masks``: name -> bool mask for the masked PSNR / LPIPS;
    ``extra``: further metrics (``name -> fn(variant, folder, names) -> row fields``), e.g. GauGAN's mIoU.
    """

    variants: dict[str, Path]
    names: list[str]
    references: dict[str, Path] = field(default_factory=dict)
    compare: list[tuple[str, str]] = field(default_factory=list)  # (variant, reference) pairs for PSNR / LPIPS
    compare_names: dict[str, list[str]] = field(default_factory=dict)  # reference -> the names it has (default all)
    fid_reference: Path | None = None  # a folder of real images, or a clean-fid statistics file (.npz)
    fid_reference_names: list[str] | None = None  # the real images of the selection (None: the whole folder)
    masks: dict[str, np.ndarray] | None = None
    extra: dict[str, Callable[[str, Path, list[str]], dict[str, Any]]] = field(default_factory=dict)
    weights: str = "random"
    settings: dict[str, Any] = field(default_factory=dict)  # what produced the images (goes into the rows)


def load_family(name: str, families: Mapping[str, str]) -> ModuleType:
    """The module of family ``name`` (a key of the ``families`` table)."""
    if name not in families:
        raise ValueError(
            f"unknown model family {name!r}; the families table (configs/config.yaml) has {sorted(families)}"
        )
    module = importlib.import_module(families[name])
    for attr in ("COMPONENTS", "MODEL_KEYS", "prepare"):
        if not hasattr(module, attr):
            raise TypeError(f"family module {families[name]} lacks {attr!r} (see sigebench.family)")
    return module
