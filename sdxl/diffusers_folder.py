"""``weights=<diffusers folder>``: this project's UNet / VAE loaded from the diffusers folder layout.

A folder is a pipeline (``unet/``, ``vae/``, ... each with ``config.json`` and weights) or one component's folder.
Weights: ``diffusion_pytorch_model[.fp16].safetensors`` (preferred), ``.bin``, or sharded (``*.index.json``);
read key by key, cast to the requested dtype, linear layers viewed as 1x1 convs, the user's files never rewritten.
The folder's ``config.json`` must describe the same network as the model config (an error names what differs);
the keys map through :mod:`sdxl.diffusers_keys` with the checkpoint loader's strict checks and errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError, CheckpointReader, load_into
from .diffusers_arch import check_same_architecture, read_config, unet_config_from_diffusers, vae_config_from_diffusers
from .diffusers_keys import legacy_vae_names, unet_key_map, vae_key_map

SUBFOLDERS = {"unet": "unet", "encoder": "vae", "decoder": "vae", "vae": "vae"}
CLASSES = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL"}
# our component -> the prefix of its keys in the diffusers AutoencoderKL file
VAE_PREFIXES = {"encoder": "encoder.", "decoder": "decoder.", "vae": ""}
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin")  # fmt: skip


def is_diffusers_folder(weights: object) -> bool:
    """Whether ``weights=`` names a folder (the diffusers layout) rather than a single-file checkpoint."""
    return isinstance(weights, (str, Path)) and str(weights) not in ("", "pretrained") and Path(weights).is_dir()


def component_folder(root: str | Path, component: str) -> Path:
    """The folder of ``component`` (``unet``, ``encoder``, ``decoder``, ``vae``) in a pipeline or component folder."""
    if component not in SUBFOLDERS:
        raise ValueError(f"unknown component {component!r}; use one of {', '.join(SUBFOLDERS)}")
    root = Path(root)
    want = CLASSES["unet" if component == "unet" else "vae"]
    for folder in (root / SUBFOLDERS[component], root):
        cfg = folder / "config.json"
        if cfg.is_file() and read_config(cfg).get("_class_name") == want:
            return folder
    raise FileNotFoundError(
        f"weights={root}: no diffusers {want} there (expected {root / SUBFOLDERS[component] / 'config.json'} or "
        f"{root / 'config.json'} with _class_name {want}); give a diffusers pipeline folder or its "
        f"{SUBFOLDERS[component]}/ folder"
    )


class ShardedReader:
    """Key -> tensor access over the shards of a ``*.index.json`` (each shard read lazily by a CheckpointReader)."""

    def __init__(self, index: Path):
        self.path = index
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index} is not a diffusers shard index ({type(e).__name__}: {e})") from None
        self._where = {k: index.parent / v for k, v in weight_map.items()}
        self._readers: dict[Path, CheckpointReader] = {}

    def keys(self) -> list[str]:
        return list(self._where)

    def get(self, key: str) -> torch.Tensor:
        shard = self._where[key]
        if shard not in self._readers:
            self._readers[shard] = CheckpointReader(shard)
        return self._readers[shard].get(key)

    def with_prefix(self, prefix: str) -> Iterator[str]:
        return (k for k in self._where if k.startswith(prefix))


def only_fp16(folder: Path) -> bool:
    """Whether a component folder holds only the float16 variant (diffusers' ``variant="fp16"``)."""
    full, half = WEIGHT_FILES[::2], WEIGHT_FILES[1::2]  # (.safetensors, .bin) without and with the fp16 variant
    return not any((folder / n).is_file() for n in full) and any((folder / n).is_file() for n in half)


def open_weights(folder: Path) -> CheckpointReader | ShardedReader:
    """The reader of a component folder's weights (full precision preferred, then float16, then sharded)."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return CheckpointReader(folder / name)
    for name in WEIGHT_FILES:
        index = folder / f"{name}.index.json"
        if index.is_file():
            return ShardedReader(index)
    raise FileNotFoundError(f"{folder} holds no diffusers weights ({', '.join(WEIGHT_FILES)} or a sharded index)")


def load_diffusers_weights(
    module: nn.Module, root: str | Path, component: str, dtype: torch.dtype = torch.float32
) -> Path:
    """Load ``component`` of our model (``UNet``, ``Encoder``, ``Decoder`` or ``AutoencoderKL``) from a diffusers
    folder; returns the weights file (or shard index) read."""
    folder = component_folder(root, component)
    config = read_config(folder / "config.json")
    if component == "unet":
        theirs = unet_config_from_diffusers(config)
    else:
        theirs = vae_config_from_diffusers(config)
    check_same_architecture(module.cfg, theirs, "the model config", str(folder / "config.json"))
    reader = open_weights(folder)
    if component == "unet":
        key_map, prefix = unet_key_map(module), ""
    else:
        key_map, prefix = vae_key_map(module), VAE_PREFIXES[component]
        if any(k.endswith("mid_block.attentions.0.query.weight") for k in reader.keys()):
            key_map = legacy_vae_names(key_map)
    load_into(module, reader, prefix, dtype, key_map)
    return reader.path
