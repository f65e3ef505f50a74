"""Loading the original single-file checkpoints, unchanged on disk.

* ``sd-v1-4.ckpt``: a PyTorch Lightning checkpoint (``state_dict`` with ``model.diffusion_model.*``,
  ``first_stage_model.*``, ``cond_stage_model.transformer.*``); it also pickles Lightning callback objects,
  which are read as inert placeholders (``weights_only`` unpickling, nothing is executed).
* ``sd_xl_{base,refiner,turbo}_1.0.safetensors``: float16 tensors ``model.diffusion_model.*``,
  ``first_stage_model.*``, ``conditioner.embedders.N.*``; read lazily, key by key.

Conversions happen here, never in the user's file: floating tensors are cast to the requested dtype
(float32 by default), a ``[a, b]`` linear weight is viewed as the ``[a, b, 1, 1]`` 1x1 conv the model
uses (SDXL's transformer ``proj_in`` / ``proj_out``, and VAE attention stored as linear layers), and the UNet's
ResBlocks and downsamplers (the engine's blocks) read ldm's keys (:data:`LDM_RESBLOCK_KEYS`, ``op``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

COMPONENT_PREFIXES = {
    "unet": "model.diffusion_model.",
    "encoder": "first_stage_model.encoder.",
    "decoder": "first_stage_model.decoder.",
    "vae": "first_stage_model.",
}


IGNORED = ("loss.",)
# the engine's ResBlock parameter names -> ldm's (the VAE uses the engine's names itself)
LDM_RESBLOCK_KEYS = {
    "norm1": "in_layers.0", "conv1": "in_layers.2", "temb_proj": "emb_layers.1", "norm2": "out_layers.0",
    "conv2": "out_layers.3", "nin_shortcut": "skip_connection",
}  # fmt: skip


def ldm_key_map(module: nn.Module) -> dict[str, str]:
    """``{our state-dict key: ldm key}`` for the engine blocks of a UNet whose ldm names differ."""
    from sige.nn.blocks import Downsample, ResBlock

    renames: dict[str, str] = {}
    for name, m in module.named_modules():
        if isinstance(m, ResBlock):
            renames.update({f"{name}.{ours}": f"{name}.{theirs}" for ours, theirs in LDM_RESBLOCK_KEYS.items()})
        elif isinstance(m, Downsample):
            renames[f"{name}.conv"] = f"{name}.op"
    out = {}
    for key in module.state_dict():
        owner, _, param = key.rpartition(".")
        out[key] = f"{renames[owner]}.{param}" if owner in renames else key
    return out


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the model (missing, wrong keys or shapes)."""


class _Placeholder:
    """Stands in for a non-tensor object pickled in a checkpoint (e.g. a Lightning callback); never executed."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        self.state = state


def _numpy_globals() -> list:
    """Harmless numpy globals of Lightning checkpoints (scalars, dtypes), kept as themselves."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    found: list = [(core.multiarray.scalar, "numpy.core.multiarray.scalar"), core.multiarray.scalar, np.dtype]
    if hasattr(np, "dtypes"):
        found += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return found


def _allowed_real_global(name: str):
    """Harmless globals kept as themselves (bytes decoding in numpy scalar pickles)."""
    import codecs

    return codecs.encode if name == "_codecs.encode" else None


def _torch_load(path: Path) -> dict:
    """``torch.load`` with ``weights_only``; unknown pickled classes become :class:`_Placeholder`."""
    import torch.serialization as ser

    extra: list = _numpy_globals()
    try:
        for name in ser.get_unsafe_globals_in_checkpoint(str(path)):
            if name.startswith("numpy."):
                continue
            real = _allowed_real_global(name)
            extra.append(
                (real, name) if real is not None else (type(name.rsplit(".", 1)[-1], (_Placeholder,), {}), name)
            )
    except Exception:  # noqa: BLE001 - not a zip checkpoint: let torch.load report it
        pass
    try:
        with ser.safe_globals(extra):
            try:
                obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"could not read checkpoint {path}: {type(e).__name__}: {e}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    return obj


class CheckpointReader:
    """Key -> tensor access to a ``.safetensors`` (lazy) or ``.ckpt`` / ``.pt`` / ``.pth`` file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"checkpoint {self.path} does not exist; download it as listed in datasets/sd_checkpoints.yaml "
                "(nothing is fetched at run time)"
            )
        self._st = None
        self._sd: dict | None = None
        if self.path.suffix == ".safetensors":
            try:
                from safetensors import safe_open
            except ImportError as e:
                raise ImportError(
                    "reading .safetensors needs the 'safetensors' package (pip install safetensors)"
                ) from e
            try:
                self._st = safe_open(str(self.path), framework="pt", device="cpu")
                self._keys = list(self._st.keys())
            except Exception as e:  # noqa: BLE001 - SafetensorError, truncated or foreign files
                raise CheckpointError(
                    f"cannot read {self.path} as a .safetensors file ({type(e).__name__}: {e}); is the download "
                    "complete? Compare its sha256 with datasets/sd_checkpoints.yaml"
                ) from None
        else:
            self._sd = _torch_load(self.path)
            self._keys = [k for k, v in self._sd.items() if isinstance(v, torch.Tensor)]

    def keys(self) -> list[str]:
        return list(self._keys)

    def get(self, key: str) -> torch.Tensor:
        if self._st is not None:
            return self._st.get_tensor(key)
        return self._sd[key]

    def with_prefix(self, prefix: str) -> Iterator[str]:
        return (k for k in self._keys if k.startswith(prefix))


def _convert(t: torch.Tensor, like: torch.Tensor, key: str, dtype: torch.dtype) -> torch.Tensor:
    if t.shape != like.shape:
        if t.dim() == 2 and like.dim() == 4 and tuple(like.shape[2:]) == (1, 1) and t.shape == like.shape[:2]:
            t = t.reshape(like.shape)  # linear [a, b] -> 1x1 conv [a, b, 1, 1]
        elif t.dim() == 4 and like.dim() == 2 and tuple(t.shape[2:]) == (1, 1) and t.shape[:2] == like.shape:
            t = t.reshape(like.shape)
        else:
            raise CheckpointError(
                f"shape mismatch for {key}: checkpoint {tuple(t.shape)}, model {tuple(like.shape)}; "
                "is this checkpoint for this model (sd14 / sdxl_base / sdxl_refiner / sdxl_turbo)?"
            )
    return t.to(dtype) if t.is_floating_point() else t


@torch.no_grad()
def load_into(
    module: nn.Module,
    reader: CheckpointReader,
    prefix: str,
    dtype: torch.dtype = torch.float32,
    key_map: dict[str, str] | None = None,
) -> None:
    """Copy every parameter/buffer of ``module`` from ``prefix + key_map[name]`` (strict both ways, in place)."""
    own = module.state_dict(keep_vars=True)
    key_map = key_map or {}
    state = {key_map.get(k, k): v for k, v in own.items()}
    available = set(reader.with_prefix(prefix))
    if not available:
        raise CheckpointError(
            f"{reader.path} has no tensors under {prefix!r}; is it an original SD / SDXL single-file checkpoint "
            "for this model?"
        )
    missing = [k for k in state if prefix + k not in available]
    # training leftovers that are no part of the model (the autoencoder's loss / discriminator)
    unexpected = sorted(k for k in available - {prefix + k for k in state} if not k[len(prefix) :].startswith(IGNORED))
    if missing or unexpected:
        raise CheckpointError(
            f"{reader.path} does not match the model under {prefix!r}: {len(missing)} missing key(s) "
            f"{missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}; is it the checkpoint of this model?"
        )
    for name, target in state.items():
        t = _convert(reader.get(prefix + name), target, prefix + name, dtype)
        if target.dtype != dtype and target.is_floating_point():
            target.data = target.data.to(dtype)
        target.data.copy_(t) if target.is_floating_point() else target.data.copy_(t.to(target.dtype))


def load_component(
    module: nn.Module, path: str | Path, component: str, dtype: torch.dtype = torch.float32
) -> CheckpointReader:
    """Load ``component`` (``unet``, ``encoder``, ``decoder``, ``vae``) of an SD / SDXL single-file checkpoint."""
    if component not in COMPONENT_PREFIXES:
        raise ValueError(f"unknown component {component!r}; use one of {', '.join(COMPONENT_PREFIXES)}")
    reader = path if isinstance(path, CheckpointReader) else CheckpointReader(path)
    load_into(
        module, reader, COMPONENT_PREFIXES[component], dtype, ldm_key_map(module) if component == "unet" else None
    )
    return reader
