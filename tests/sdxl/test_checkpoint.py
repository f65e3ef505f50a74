"""Loading the original single-file layouts (synthetic files of the real key layout written here)."""

import hashlib
import sys
import types

import numpy as np
import pytest
import torch

from sdxl.checkpoint import CheckpointError, CheckpointReader, ldm_key_map, load_component
from sdxl.unet import UNet
from sdxl.vae import AutoencoderKL, Decoder, Encoder

from .tiny import sd_like, sdxl_like, vae_like


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def released_layout(unet: UNet, vae: AutoencoderKL, linear_proj: bool, dtype=torch.float16) -> dict:
    """The tensors of an original single-file checkpoint: prefixes, fp16, transformer projections as linear."""
    g = torch.Generator().manual_seed(1)
    out = {}
    ldm = ldm_key_map(unet)  # the released names (in_layers, emb_layers, out_layers, skip_connection, op)
    for k, v in unet.state_dict().items():
        k = ldm[k]
        t = torch.randn(v.shape, generator=g).to(dtype)
        if linear_proj and (k.endswith("proj_in.weight") or k.endswith("proj_out.weight")) and ".1." in k:
            t = t.reshape(t.shape[:2])  # SDXL stores them as linear [out, in]
        out["model.diffusion_model." + k] = t
    for k, v in vae.state_dict().items():
        out["first_stage_model." + k] = torch.randn(v.shape, generator=g).to(dtype)
    out["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"] = torch.ones(8, dtype=dtype)
    return out


def test_sdxl_safetensors_load_cast_and_reshape_without_touching_the_file(tmp_path):
    from safetensors.torch import save_file

    unet, vae = UNet(sdxl_like()), AutoencoderKL(vae_like())
    tensors = released_layout(unet, vae, linear_proj=True)
    assert any(t.dim() == 2 and "proj_in" in k for k, t in tensors.items())
    path = tmp_path / "sd_xl_tiny.safetensors"
    save_file(tensors, str(path))
    before = sha(path)
    fresh = UNet(sdxl_like())
    load_component(fresh, path, "unet")
    ldm = ldm_key_map(fresh)
    assert ldm["input_blocks.1.0.norm1.weight"] == "input_blocks.1.0.in_layers.0.weight"
    assert any(v.endswith(".op.weight") for v in ldm.values())  # the downsamplers
    for k, v in fresh.state_dict().items():
        assert v.dtype == torch.float32
        ref = tensors["model.diffusion_model." + ldm[k]].float().reshape(v.shape)
        torch.testing.assert_close(v, ref, rtol=0, atol=0)
    enc, dec = Encoder(vae_like()), Decoder(vae_like())
    reader = load_component(enc, path, "encoder", dtype=torch.bfloat16)
    load_component(dec, reader, "decoder")
    assert all(p.dtype == torch.bfloat16 for p in enc.parameters())
    torch.testing.assert_close(dec.conv_out.weight, tensors["first_stage_model.decoder.conv_out.weight"].float())
    assert sha(path) == before  # the user's file is never rewritten


class _FakeCallback:
    def __init__(self):
        self.best = np.float64(0.25)


def test_lightning_ckpt_with_pickled_callbacks_loads_without_executing_them(tmp_path):
    unet = UNet(sd_like())
    tensors = {k: v.float() for k, v in released_layout(unet, AutoencoderKL(vae_like()), False).items()}
    # a Lightning checkpoint pickles callback objects of classes the loader does not have
    mod = types.ModuleType("fake_lightning_callbacks")
    _FakeCallback.__module__ = mod.__name__
    mod._FakeCallback = _FakeCallback
    sys.modules[mod.__name__] = mod
    try:
        path = tmp_path / "sd-tiny.ckpt"
        torch.save({"state_dict": tensors, "global_step": 470000, "callbacks": {"cb": _FakeCallback()}}, path)
    finally:
        del sys.modules[mod.__name__]
    fresh = UNet(sd_like())
    load_component(fresh, path, "unet")
    ldm = ldm_key_map(fresh)
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, tensors["model.diffusion_model." + ldm[k]], rtol=0, atol=0)


def test_mismatches_are_clear_errors(tmp_path):
    from safetensors.torch import save_file

    unet = UNet(sdxl_like())
    tensors = released_layout(unet, AutoencoderKL(vae_like()), True)
    path = tmp_path / "a.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match="missing key"):
        load_component(UNet(sdxl_like(transformer_depth=[0, 3])), path, "unet")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_component(UNet(sdxl_like(context_dim=16)), path, "unet")
    del tensors["model.diffusion_model.out.2.bias"]
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=r"missing key.*out\.2\.bias"):
        load_component(UNet(sdxl_like()), path, "unet")
    save_file({"other.weight": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="no tensors under 'model.diffusion_model.'"):
        load_component(UNet(sdxl_like()), path, "unet")
    with pytest.raises(FileNotFoundError, match="sd_checkpoints.yaml"):
        CheckpointReader(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="unknown component"):
        load_component(UNet(sdxl_like()), path, "text")
    path.write_bytes(b"\x08\x00")  # a truncated / foreign .safetensors file
    with pytest.raises(CheckpointError, match=r"cannot read .*a\.safetensors as a \.safetensors file"):
        CheckpointReader(path)
