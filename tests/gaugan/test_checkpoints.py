"""Loading checkpoints in the released key layouts (synthetic state dicts of those layouts)."""

import pytest
import torch

from gaugan.checkpoints import CheckpointError, load_checkpoint, load_state_dict
from sigebench.weights import resolve_weights

from .helpers import SUPERNET_EXTRA, original_state_dict, random_semantics, reference_forward, tiny


def fuse(sd, model):
    """The fused release layout built by hand from the unfused one (what the original converter does)."""
    out = dict(sd)
    for b in model.spec.blocks:
        norms = ["0", "1"] + (["s"] if b.learned_shortcut else [])
        for part in ("weight", "bias"):
            out[f"{b.name}.mlp_shared.0.{part}"] = torch.cat(
                [out.pop(f"{b.name}.norm_{k}.mlp_shared.0.{part}") for k in norms]
            )
            if not model.spec.separable:
                for k in norms:
                    q = f"{b.name}.norm_{k}."
                    out[q + f"mlp_gamma_beta.{part}"] = torch.cat(
                        [out.pop(q + f"mlp_{n}.{part}") for n in ("gamma", "beta")]
                    )
    return out


@pytest.mark.parametrize("kind", ["gaugan", "gan_compression"])
def test_unfused_and_fused_layouts_give_the_same_generator(kind, tmp_path):
    gen = torch.Generator().manual_seed(0)
    a = tiny(kind)
    sd = original_state_dict(a, gen)
    fused = fuse(sd, a)
    assert any(k.endswith("mlp_shared.0.weight") and ".norm_" not in k for k in fused)
    path = tmp_path / "fused.pth"
    torch.save(fused, path)
    b = load_checkpoint(tiny(kind), path)
    load_state_dict(a, sd)
    seg = random_semantics(a, gen=gen)
    with torch.no_grad():
        torch.testing.assert_close(a(seg), b(seg), atol=0, rtol=0)
        torch.testing.assert_close(a(seg), reference_forward(sd, a, seg), atol=2e-5, rtol=1e-4)
    # our own state dict is the fused layout: a round trip through a file is the identity
    torch.save(b.state_dict(), tmp_path / "ours.pth")
    c = load_checkpoint(tiny(kind), tmp_path / "ours.pth")
    for k, v in b.state_dict().items():
        assert torch.equal(v, c.state_dict()[k]), k


def test_key_mapping_details():
    gen = torch.Generator().manual_seed(1)
    model = tiny("gaugan")
    sd = original_state_dict(model, gen)
    load_state_dict(model, sd)
    up0 = model.up_0
    h = up0.nhidden
    w = up0.mlp_shared[0].weight
    assert torch.equal(w[:h], sd["up_0.norm_0.mlp_shared.0.weight"])
    assert torch.equal(w[h : 2 * h], sd["up_0.norm_1.mlp_shared.0.weight"])
    assert torch.equal(w[2 * h :], sd["up_0.norm_s.mlp_shared.0.weight"])
    gb = up0.norm_s.mlp_gamma_beta.weight
    C = up0.norm_s.channels
    assert torch.equal(gb[:C], sd["up_0.norm_s.mlp_gamma.weight"])
    assert torch.equal(gb[C:], sd["up_0.norm_s.mlp_beta.weight"])
    assert torch.equal(up0.norm_0.param_free_norm.running_var, sd["up_0.norm_0.param_free_norm.running_var"])


def test_truncated_param_free_norm_statistics():
    """GAN Compression releases keep the supernet's (wider) BatchNorm statistics; the first C are used."""
    gen = torch.Generator().manual_seed(2)
    model = tiny("gan_compression")
    sd = original_state_dict(model, gen)
    key = "up_1.norm_1.param_free_norm.running_mean"
    C = model.up_1.norm_1.channels
    assert sd[key].shape[0] == C + SUPERNET_EXTRA
    load_state_dict(model, sd)
    assert torch.equal(model.up_1.norm_1.param_free_norm.running_mean, sd[key][:C])


def test_spectral_norm_prefix_and_container(tmp_path):
    gen = torch.Generator().manual_seed(3)
    model = tiny("gaugan")
    sd = original_state_dict(model, gen)
    w = sd.pop("head_0.conv_0.weight")
    u = torch.nn.functional.normalize(torch.randn(w.shape[0], generator=gen), dim=0)
    v = torch.nn.functional.normalize(torch.randn(w[0].numel(), generator=gen), dim=0)
    sd.update({"head_0.conv_0.weight_orig": w, "head_0.conv_0.weight_u": u, "head_0.conv_0.weight_v": v})
    sd = {"module." + k: t for k, t in sd.items()}
    sd.pop("module.head_0.norm_1.param_free_norm.num_batches_tracked")  # older checkpoints have none
    torch.save({"state_dict": sd}, tmp_path / "sn.pth")
    load_checkpoint(model, tmp_path / "sn.pth")
    sigma = torch.dot(u.double(), w.reshape(w.shape[0], -1).double() @ v.double())
    torch.testing.assert_close(model.head_0.conv_0.weight, (w.double() / sigma).float())


def test_mismatches_are_explained(tmp_path):
    gen = torch.Generator().manual_seed(4)
    gaugan_sd = original_state_dict(tiny("gaugan"), gen)
    with pytest.raises(CheckpointError, match="missing: .*unexpected: .*check the model config"):
        load_state_dict(tiny("gan_compression"), gaugan_sd)
    with pytest.raises(CheckpointError, match="shape mismatch: fc.weight"):
        load_state_dict(tiny("gaugan", ngf=8), gaugan_sd)
    partial = {k: v for k, v in gaugan_sd.items() if not k.startswith("up_1.norm_1.mlp_shared")}
    with pytest.raises(CheckpointError, match="up_1"):
        load_state_dict(tiny("gaugan"), partial)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not read"):
        load_checkpoint(tiny("gaugan"), tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve_weights(str(tmp_path / "missing.pth"), None)
    assert resolve_weights(None, None) is None


def test_missing_pretrained_weights_give_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGE_DATA", str(tmp_path))
    monkeypatch.setenv("SIGE_DATA_MIRROR", str(tmp_path / "empty-mirror"))
    item = {"manifest": "gaugan_checkpoints", "item": "fused_spade.pth"}
    with pytest.raises(FileNotFoundError, match=r"(?s)weights=pretrained needs fused_spade\.pth.*216677f8"):
        resolve_weights("pretrained", item)
