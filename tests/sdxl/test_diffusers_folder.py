"""``weights=<diffusers folder>``: the diffusers layout loaded into this project's models through the key map (every
file flavour diffusers writes), with the checkpoint loader's clear errors; the family builds from folders."""

import copy
import hashlib
import json

import pytest
import torch

from sdxl.checkpoint import CheckpointError
from sdxl.diffusers_arch import DiffusersConfigError, unet_config_from_diffusers, vae_config_from_diffusers
from sdxl.diffusers_folder import component_folder, load_diffusers_weights
from sdxl.unet import UNet
from sdxl.vae import AutoencoderKL, Decoder, Encoder

from . import diffusers_tiny as tiny
from .test_diffusers_convert import unet_args

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def models():
    return tiny.unet("sdxl"), tiny.vae()


def save(folder, unet, vae, **kw):
    unet.save_pretrained(str(folder / "unet"), **kw)
    vae.save_pretrained(str(folder / "vae"), **kw)
    return folder


@torch.no_grad()
def check_outputs(folder, unet, vae):
    ours = UNet(unet_config_from_diffusers(dict(unet.config)))
    path = load_diffusers_weights(ours, folder, "unet")
    kw, args = unet_args(dict(unet.config))
    torch.testing.assert_close(ours.eval()(*args), unet(**kw).sample, atol=2e-5, rtol=2e-5)
    cfg = vae_config_from_diffusers(dict(vae.config))
    whole, enc, dec = AutoencoderKL(cfg), Encoder(cfg), Decoder(cfg)
    load_diffusers_weights(whole, folder, "vae")
    load_diffusers_weights(enc, folder / "vae", "encoder")  # a component's own folder works too
    load_diffusers_weights(dec, folder, "decoder")
    img = tiny.images(32, 48)[0]
    torch.testing.assert_close(whole.eval().encode(img)[0], vae.encode(img).latent_dist.mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(enc.eval()(img), whole.encoder(img), atol=0, rtol=0)
    z = torch.randn(1, 4, 16, 24)
    torch.testing.assert_close(dec.eval()(z), whole.decoder(z), atol=0, rtol=0)
    return path


def test_safetensors_bin_fp16_and_sharded_folders_load_through_the_key_map(tmp_path, models):
    unet, vae = models
    a = save(tmp_path / "a", unet, vae)
    digest = hashlib.sha256((a / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    assert check_outputs(a, unet, vae).name == "diffusion_pytorch_model.safetensors"
    assert hashlib.sha256((a / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest() == digest
    b = save(tmp_path / "b", unet, vae, safe_serialization=False)
    assert check_outputs(b, unet, vae).name == "diffusion_pytorch_model.bin"
    c = save(tmp_path / "c", unet, vae, max_shard_size="200KB")
    assert check_outputs(c, unet, vae).name.endswith(".index.json")
    d = tmp_path / "d"  # only the float16 variant: cast to the requested dtype on load
    copy.deepcopy(unet).half().save_pretrained(str(d / "unet"), variant="fp16")
    ours = UNet(unet_config_from_diffusers(dict(unet.config)))
    assert load_diffusers_weights(ours, d, "unet").name == "diffusion_pytorch_model.fp16.safetensors"
    assert ours.out[2].weight.dtype == torch.float32
    torch.testing.assert_close(ours.out[2].weight, unet.conv_out.weight.half().float(), atol=0, rtol=0)


def test_legacy_vae_attention_names_load(tmp_path, models):
    """Files written before diffusers 0.14 (SD 1.4's VAE on the Hub) name the attention query/key/value/proj_attn."""
    from safetensors.torch import load_file, save_file

    unet, vae = models
    folder = save(tmp_path, unet, vae)
    f = folder / "vae" / "diffusion_pytorch_model.safetensors"
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    tensors = {}
    for k, v in load_file(str(f)).items():
        for new, legacy in old.items():
            k = k.replace(f"attentions.0.{new}.", f"attentions.0.{legacy}.")
        tensors[k] = v
    assert any(".query." in k for k in tensors)
    save_file(tensors, str(f))
    check_outputs(folder, unet, vae)


def test_folder_errors_name_what_is_wrong(tmp_path, models):
    from safetensors.torch import load_file, save_file

    unet, vae = models
    folder = save(tmp_path / "f", unet, vae)
    sd_like = UNet(unet_config_from_diffusers(dict(tiny.SD_UNET)))
    with pytest.raises(DiffusersConfigError, match="describe different networks.*levels"):
        load_diffusers_weights(sd_like, folder, "unet")
    f = folder / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(f))
    del tensors["conv_out.bias"]
    tensors["extra.weight"] = torch.zeros(1)
    save_file(tensors, str(f))
    ours = UNet(unet_config_from_diffusers(dict(unet.config)))
    with pytest.raises(
        CheckpointError, match=r"1 missing key\(s\) \['conv_out.bias'\], 1 unexpected key\(s\) \['extra"
    ):
        load_diffusers_weights(ours, folder, "unet")
    with pytest.raises(FileNotFoundError, match="no diffusers UNet2DConditionModel"):
        component_folder(tmp_path, "unet")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="holds no diffusers weights"):
        load_diffusers_weights(ours, folder, "unet")
    (folder / "vae" / "config.json").write_text(json.dumps({**dict(vae.config), "_class_name": "AutoencoderKL",
                                                            "act_fn": "gelu"}))  # fmt: skip
    with pytest.raises(DiffusersConfigError, match="act_fn='gelu'"):
        load_diffusers_weights(Decoder(vae_config_from_diffusers(dict(vae.config))), folder, "decoder")
