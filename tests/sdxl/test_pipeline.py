"""Samplers, text encoders (synthetic weights of the released layouts) and the SDEdit / inpainting pipelines
(tiny random models): same seed, same image; SIGE runs the full-then-sparse protocol."""

import json

import numpy as np
import pytest
import torch

from sdxl.checkpoint import CheckpointReader
from sdxl.edits import EditCase, inpainting_masks, sdedit_masks
from sdxl.generate import Components, Guided, complete_pyramid, generate, img2img_plan, run_pipeline, sample
from sdxl.text import ClipL, OpenClipText, Tokenizer, load_clip_l, load_openclip, size_embedding
from sdxl.unet import UNet
from sdxl.vae import AutoencoderKL
from sigebench.samplers import sampler_from_config
from sigebench.schedules import make_schedule, q_sample

from .tiny import model_cfg, sdxl_like, vae_like

SAMPLERS = {name: model_cfg(model)["sampler"] for name, model in
            (("ddim", "sd14"), ("dpmpp2m", "sdxl_base"), ("turbo", "sdxl_turbo"))}  # fmt: skip


def test_ldm_ddim_plan_and_an_exact_eps_keep_x0():
    cfg = SAMPLERS["ddim"]
    seq, start = img2img_plan(cfg, 0.8)  # SDEdit strength 0.8: t_enc = 40, noised one step higher (ldm)
    assert seq[:3] == [1, 21, 41] and len(seq) == 40 and start == 801
    sch = make_schedule(cfg)
    x0, eps = torch.randn(1, 4, 2, 2, dtype=torch.float64), torch.randn(1, 4, 2, 2, dtype=torch.float64)
    fn, opts = sampler_from_config(cfg)
    x = q_sample(x0, start, eps, sch)

    def exact(x, t, step):  # the eps of the current x for this x0
        a, s = sch.alpha_sigma(t)
        return (x - a * x0) / s

    out = fn(exact, x, seq, sch, **opts)
    torch.testing.assert_close(out, q_sample(x0, 0, exact(out, 0, 0), sch))  # lands on alpha_bar(0)


def test_sgm_samplers_reach_the_data_with_an_exact_denoiser():
    x0 = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    for name, strength in (("dpmpp2m", 1.0), ("dpmpp2m", 0.8), ("turbo", 1.0), ("turbo", 0.5)):
        cfg = SAMPLERS[name]
        sch = make_schedule(cfg)
        seq, start = img2img_plan(cfg, strength)
        noise = torch.randn_like(x0)
        x = noise if start is None else q_sample(x0, start, noise, sch)

        def exact(x, t, step, sch=sch):
            a, s = sch.alpha_sigma(t)
            return (x - a * x0) / s

        fn, opts = sampler_from_config(cfg)
        torch.testing.assert_close(fn(exact, x, seq, sch, generator=torch.Generator().manual_seed(0), **opts), x0)
    assert len(img2img_plan(SAMPLERS["dpmpp2m"], 0.8)[0]) == 39  # int(0.8 * 51) - 1 sigmas kept, the final 0 too
    assert img2img_plan(SAMPLERS["turbo"], 0.5) == ([699], 699)
    sch = make_schedule(SAMPLERS["dpmpp2m"])
    a = sch.alpha_bar(999)
    assert abs(((1 - a) / a) ** 0.5 - 14.6146) < 1e-3  # sgm's sigma_max


def test_size_embedding_is_the_concatenated_sinusoid():
    e = size_embedding([512, 1024], batch=2)
    assert e.shape == (2, 512)
    torch.testing.assert_close(e[0, :128], torch.cos(512 * torch.exp(-np.log(10000) * torch.arange(128) / 128)))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A tiny CLIP BPE vocabulary (the real one has 49408 entries)."""
    d = tmp_path_factory.mktemp("tok")
    chars = list("abcdefghijklmnopqrstuvwxyz")
    vocab = {c: 100 + i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 200 + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": 49406, "<|endoftext|>": 49407})
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    return d


def test_tokenizer_pads_clip_with_eot_and_openclip_with_zero(tokenizer_dir):
    tok = Tokenizer(tokenizer_dir)
    a, b = tok(["ab c"]), tok(["ab c"], pad=0)
    assert a.shape == (1, 77) and a[0, 0] == 49406
    n = int((b != 0).sum())
    assert b[0, n - 1] == 49407 and (b[0, n:] == 0).all() and (a[0, n - 1 :] == 49407).all()
    with pytest.raises(FileNotFoundError, match="model.text.tokenizer"):
        Tokenizer(None)
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        Tokenizer(tokenizer_dir.parent)


def test_text_encoders_load_from_the_released_key_layouts(tmp_path):
    from safetensors.torch import save_file

    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    clip = ClipL("penultimate", **small)
    big = OpenClipText(width=16, layers=3, heads=2, embed_dim=8)
    g = torch.Generator().manual_seed(0)
    tensors = {}
    inner = clip.transformer.state_dict()
    nested = next(iter(inner)).startswith("text_model.")
    for k, v in inner.items():
        name = ("conditioner.embedders.0.transformer." + ("" if nested else "text_model.")) + k
        tensors[name] = torch.randn(v.shape, generator=g).half() if v.is_floating_point() else v
    for k, v in big.state_dict().items():
        tensors["conditioner.embedders.1.model." + k] = torch.randn(v.shape, generator=g).half()
    tensors["conditioner.embedders.1.model.logit_scale"] = torch.ones(())
    save_file(tensors, str(tmp_path / "x.safetensors"))
    reader = CheckpointReader(tmp_path / "x.safetensors")
    import sdxl.text as text

    ids = torch.randint(0, 40, (2, 77))
    ids[:, 5] = 49407
    orig = text.OpenClipText
    try:  # the loaders build full-size towers; build tiny ones for this synthetic file
        text.OpenClipText = lambda: OpenClipText(width=16, layers=3, heads=2, embed_dim=8)
        text.ClipL = lambda layer: ClipL(layer, **small)
        c = load_clip_l(reader, "conditioner.embedders.0.transformer.", "penultimate")
        o = load_openclip(reader, "conditioner.embedders.1.model.")
    finally:
        text.OpenClipText, text.ClipL = orig, ClipL
    ids = ids.clamp(max=49407) % 49408
    ids[ids > 60] = 3
    ids[:, 5] = 49407
    with torch.no_grad():
        h = c(torch.where(ids == 49407, torch.full_like(ids, 7), ids))
        pen, pooled = o(torch.where(ids == 49407, torch.full_like(ids, 30), ids))
    assert h.shape == (2, 77, 16) and pen.shape == (2, 77, 16) and pooled.shape == (2, 8)
    assert o.positional_embedding.dtype == torch.float32
    torch.testing.assert_close(o.ln_final.weight, tensors["conditioner.embedders.1.model.ln_final.weight"].float())


def test_sdxl_conditioning_concatenates_text_and_size_embeddings(tmp_path, tokenizer_dir, monkeypatch):
    """base: context = [CLIP-L penultimate | bigG penultimate], y = [pooled | orig size | crop | target size];
    the unconditional text is zeroed; refiner: y ends with the aesthetic score."""
    from safetensors.torch import save_file

    import sdxl.text as text
    from sdxl.generate import encode_text

    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    monkeypatch.setattr(text, "ClipL", lambda layer: ClipL(layer, **small))
    monkeypatch.setattr(text, "OpenClipText", lambda: OpenClipText(width=16, layers=2, heads=2, embed_dim=8))
    tensors = {}
    inner = text.ClipL("penultimate").transformer.state_dict()
    nested = next(iter(inner)).startswith("text_model.")
    for k, v in inner.items():
        name = "e0.transformer." + ("" if nested else "text_model.") + k
        tensors[name] = torch.randn(v.shape) if v.is_floating_point() else v
    for k, v in text.OpenClipText().state_dict().items():
        tensors["e1.model." + k] = torch.randn(v.shape)
    save_file(tensors, str(tmp_path / "c.safetensors"))
    reader = CheckpointReader(tmp_path / "c.safetensors")
    base = {
        "text": {
            "clip_l": {"prefix": "e0.transformer.", "layer": "penultimate"},
            "openclip_bigg": {"prefix": "e1.model."},
            "tokenizer": str(tokenizer_dir),
        },
        "conditioning": {"original_size": [1024, 1024], "crop_coords_top_left": [0, 0], "zero_uncond_text": True},
    }  # fmt: skip
    c, u = encode_text(base, reader, "ab c", "", (512, 1024), torch.float32)
    assert c["context"].shape == (1, 77, 32) and c["y"].shape == (1, 8 + 3 * 512)
    assert not u["context"].any() and not u["y"][:, :8].any()
    torch.testing.assert_close(c["y"][:, 8:], u["y"][:, 8:])
    torch.testing.assert_close(c["y"][:, 8 + 1024 :], size_embedding([512, 1024], 1))
    refiner = {
        "text": {"openclip_bigg": {"prefix": "e1.model."}, "tokenizer": str(tokenizer_dir)},
        "conditioning": {"aesthetic_score": 6.0, "negative_aesthetic_score": 2.5, "zero_uncond_text": False},
    }
    c, u = encode_text(refiner, reader, "ab c", "", (512, 1024), torch.float32)
    assert c["context"].shape == (1, 77, 16) and c["y"].shape == (1, 8 + 2 * 512 + 256)
    torch.testing.assert_close(c["y"][:, -256:], size_embedding([6.0], 1))
    torch.testing.assert_close(u["y"][:, -256:], size_embedding([2.5], 1))
    assert u["context"].abs().sum() > 0


def _components(seed=0):
    torch.manual_seed(seed)
    return Components(UNet(sdxl_like()).eval(), AutoencoderKL(vae_like()).eval(), 0.13)


def _cases(identical=False):
    g = torch.Generator().manual_seed(3)
    orig = torch.rand(1, 3, 32, 48, generator=g) * 2 - 1
    edited = orig.clone()
    edited[..., 10:16, 20:28] = -orig[..., 10:16, 20:28]
    diff, masks, dec = sdedit_masks(orig, edited)
    sd = EditCase("tiny_sdedit", "sdedit", orig, orig if identical else edited, diff, masks, dec)
    m = np.zeros((32, 48), bool)
    m[14:26, 6:20] = True
    ip = inpainting_masks(m)
    inp = EditCase("tiny_inpaint", "inpainting", orig, orig, torch.from_numpy(m), ip, ip)
    return sd, inp


def _cond(cfg, B=1):
    g = torch.Generator().manual_seed(5)
    c = {
        "context": torch.randn(B, 5, cfg.context_dim, generator=g),
        "y": torch.randn(B, cfg.adm_in_channels, generator=g),
    }
    u = {"context": torch.zeros_like(c["context"]), "y": torch.randn(B, cfg.adm_in_channels, generator=g)}
    return c, u


SAMPLINGS = {
    "ddim": {**SAMPLERS["ddim"], "sample_steps": 2, "strength": 1.0},
    "dpmpp2m": {**SAMPLERS["dpmpp2m"], "sample_steps": 3, "strength": 0.7, "inpaint_strength": 0.7},
    "turbo": SAMPLERS["turbo"],
}


@pytest.mark.parametrize("kind, name", [(0, "ddim"), (1, "dpmpp2m"), (0, "turbo")], ids=["sdedit", "inpaint", "turbo"])
def test_pipelines_are_deterministic(kind, name):
    comp, sampling = _components(), SAMPLINGS[name]
    case = _cases()[kind]
    cond, uncond = _cond(comp.unet.cfg)
    uncond = uncond if sampling["guidance"] != 1.0 else None
    a = run_pipeline(comp, case, cond, uncond, sampling, seed=7, sige=True)
    b = run_pipeline(comp, case, cond, uncond, sampling, seed=7, sige=True)
    dense = run_pipeline(comp, case, cond, uncond, sampling, seed=7, sige=False)
    assert a.shape == (1, 3, 32, 48) and torch.equal(a, b) and not torch.equal(a, dense)
    assert torch.isfinite(a).all()


@pytest.mark.parametrize("name", ["ddim", "dpmpp2m"])
def test_sige_sdedit_of_an_unchanged_image_is_the_dense_pipeline(name):
    """Edited == original: the sparse passes (the masks still select tiles) must reproduce the full ones."""
    comp, sampling = _components(), SAMPLINGS[name]
    case = _cases(identical=True)[0]
    assert any(m.any() for m in case.masks.values())
    cond, uncond = _cond(comp.unet.cfg)
    a = run_pipeline(comp, case, cond, uncond, sampling, seed=3, sige=True)
    torch.testing.assert_close(
        a, run_pipeline(comp, case, cond, uncond, sampling, seed=3, sige=False), atol=1e-4, rtol=0
    )


def test_sampling_runs_full_then_sparse_every_step():
    comp = _components()
    case = _cases()[0]
    cond, uncond = _cond(comp.unet.cfg)
    modes = []
    unet = comp.unet
    orig_forward = unet.forward

    def spy(*args, **kw):
        modes.append(unet.mode)
        return orig_forward(*args, **kw)

    unet.forward = spy
    cfg = {**SAMPLERS["dpmpp2m"], "sample_steps": 3}
    seq, _ = img2img_plan(cfg, 1.0)
    x = torch.randn(1, 4, 8, 12)
    sample(Guided(unet, cond, uncond, 6.0), cfg, x, seq, torch.Generator().manual_seed(0), init=x.clone(),
           masks=complete_pyramid(case.masks, (4, 6)))  # fmt: skip
    assert modes == ["full", "sparse"] * len(seq) and unet.mode == "full" and unet.cache_nbytes() == 0


def test_generate_fails_clearly_without_weights():
    with pytest.raises(FileNotFoundError, match="weights=PATH"):
        generate({"model": {"name": "sd14", "checkpoint": None}, "edit": {}, "task": {}, "weights": None})
