"""SIGE editing sessions on tiny diffusers pipelines (random weights, prompts as embeddings or a tiny CLIP): dense vs
sparse, a session reused for further edits, inpainting, SDXL with the refiner, v-prediction."""

import json

import numpy as np
import pytest
import torch

from sdxl.diffusers_pipeline import PromptEmbeds, SIGEPipeline, scheduler_settings
from sdxl.generate import Guided
from sigebench.schedules import make_schedule
from sigebench.variants import output_psnr

from . import diffusers_tiny as tiny

pytest.importorskip("diffusers")


def embeds(width=32, pooled=None, seed=5):
    g = torch.Generator().manual_seed(seed)
    e = PromptEmbeds(torch.randn(1, 7, width, generator=g), torch.randn(1, 7, width, generator=g))
    if pooled:
        e.pooled_prompt_embeds = torch.randn(1, pooled, generator=g)
        e.negative_pooled_prompt_embeds = torch.zeros(1, pooled)
    return e


@pytest.fixture(scope="module")
def sd():
    return SIGEPipeline.from_pipe(tiny.sd_pipeline())


def test_sdedit_session_dense_vs_sparse_and_reuse(sd):
    orig, edited = tiny.images()
    other = orig.clone()
    other[..., 40:50, 8:20] = 0.5
    session = sd.session(orig, embeds(), num_inference_steps=4, strength=0.8, seed=11)
    cached = session.cache_bytes
    assert cached > 0 and session.original_image.size == (96, 64)
    sparse = session.edit(edited)
    dense = session.edit(edited, dense=True)
    assert sparse.images[0].size == (96, 64) and sparse.image.shape == (1, 3, 64, 96)
    effect = (dense.image - session.session.original_image).abs().max()
    assert (sparse.image - dense.image).abs().max() < 0.5 * effect and output_psnr(sparse.image, dense.image) > 40
    second = session.edit(other)
    again = session.edit(edited)
    assert torch.equal(again.image, sparse.image)  # the caches are unchanged by edits
    fresh = sd.session(orig, embeds(), num_inference_steps=4, strength=0.8, seed=11)
    assert session.session.closed  # a new session of the same pipeline ends the previous one
    with pytest.raises(RuntimeError, match="session is closed"):
        session.edit(edited)
    assert torch.equal(fresh.edit(other).image, second.image)  # reused session == a fresh one
    same = fresh.edit(orig)  # no difference: every pass keeps the cached original
    torch.testing.assert_close(same.image, fresh.session.original_image, atol=1e-6, rtol=0)
    assert fresh.cache_bytes >= cached
    fresh.close()
    assert fresh.cache_bytes == 0
    lean = sd.session(orig, embeds(), num_inference_steps=4, strength=0.8, seed=11, keep_steps=False)
    assert lean.cache_bytes < cached / 2  # one step's UNet caches instead of every step's
    torch.testing.assert_close(lean.edit(other).image, second.image, atol=1e-6, rtol=0)  # the same edit


def test_inpainting_session_edits_the_masked_region(sd):
    orig, _ = tiny.images()
    mask = np.zeros((64, 96), np.uint8)
    mask[16:40, 24:64] = 255
    other = np.zeros((64, 96), bool)
    other[40:60, 4:30] = True
    s = sd.session(orig, embeds(), mode="inpaint", num_inference_steps=3, strength=0.5, seed=2)
    out, dense = s.edit(mask_image=mask), s.edit(mask_image=mask, dense=True)
    s.edit(mask_image=other)
    assert torch.equal(s.edit(mask_image=mask).image, out.image)  # another mask in between changes no cache
    inside = torch.from_numpy(mask > 0)
    base = s.session.original_image
    assert (out.image - base).abs()[..., inside].mean() > 1.5 * (out.image - base).abs()[..., ~inside].mean()
    # tiny maps: the tiles of the lowest levels span much of the image, so the frozen statistics weigh more here
    assert output_psnr(out.image, dense.image) > 20
    with pytest.raises(ValueError, match="edit\\(mask=MASK\\)"):
        s.edit(orig)
    s.close()


def test_one_shot_call_and_bad_inputs(sd):
    orig, edited = tiny.images()
    out = sd(orig, embeds(), edited_image=edited, num_inference_steps=2, strength=0.5)
    assert out.image.shape == (1, 3, 64, 96) and sd._session.closed
    with pytest.raises(ValueError, match="multiples of 4"):
        sd.session(orig, embeds(), height=62, width=96)
    with pytest.raises(ValueError, match="negative_prompt_embeds"):
        sd.session(orig, PromptEmbeds(embeds().prompt_embeds), guidance_scale=7.5)
    with pytest.raises(ValueError, match="no text encoder"):
        sd.session(orig, "a house")
    with pytest.raises(ValueError, match="unknown sampler"):
        sd.session(orig, embeds(), sampler="heun")
    with pytest.raises(ValueError, match="beta_schedule"):
        scheduler_settings({"beta_schedule": "squaredcos_cap_v2"})


def test_sdxl_with_refiner_and_micro_conditioning():
    base, refiner = tiny.sdxl_pipelines()
    sige = SIGEPipeline.from_pipe(base, refiner)
    orig, edited = tiny.images()
    s = sige.session(orig, embeds(32, 16), refiner_prompt=embeds(24, 16, seed=6), num_inference_steps=3,
                     strength=0.7, refiner_strength=0.5, guidance_scale=5.0)  # fmt: skip
    assert [st.model.unet for st in s.session.stages] == [sige.base.unet, sige.refiner.unet]
    y = s.session.stages[0].model.cond["y"]
    ids = torch.tensor([[64.0, 96, 0, 0, 64, 96]])  # diffusers' defaults: original = target = the image size
    from sdxl.diffusers_convert import added_cond_vector

    torch.testing.assert_close(y, added_cond_vector(embeds(32, 16).pooled_prompt_embeds, ids, 8))
    ry = s.session.stages[1].model.uncond["y"]  # the refiner's negative aesthetic score (2.5)
    torch.testing.assert_close(ry[:, -8:], added_cond_vector(torch.zeros(1, 0), torch.tensor([[2.5]]), 8))
    sparse, dense = s.edit(edited), s.edit(edited, dense=True)
    assert output_psnr(sparse.image, dense.image) > 25
    with pytest.raises(ValueError, match="refiner's own"):
        sige.session(orig, embeds(32, 16))


def test_v_prediction_is_converted_to_eps():
    sampler = {"schedule": "discrete", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
    sch = make_schedule(sampler)
    x0, eps = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    a, s = sch.alpha_sigma(700)
    x = a * x0 + s * eps

    class V(torch.nn.Module):
        def forward(self, x, t, context, y=None):
            return a * eps - s * x0

    g = Guided(V(), {"context": torch.zeros(1, 1, 1)}, None, 1.0, "v_prediction", sch)
    torch.testing.assert_close(g.eps(x, 700), eps)
    with pytest.raises(ValueError, match="not supported"):
        Guided(V(), {}, None, 1.0, "sample")


def test_prompts_through_the_pipelines_text_encoder(tmp_path):
    """A string prompt is encoded by the diffusers pipeline's own encode_prompt (tiny CLIP, local tokenizer)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
    vocab.update({c + "</w>": 26 + i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")})
    vocab.update({"<|startoftext|>": 52, "<|endoftext|>": 53})
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=77)
    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=54, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, bos_token_id=52, eos_token_id=53, pad_token_id=53)  # fmt: skip
    enc = CLIPTextModel(cfg).eval()
    pipe = tiny.sd_pipeline(text_encoder=enc, tokenizer=tok)
    sige = SIGEPipeline.from_pipe(pipe)
    orig, edited = tiny.images()
    pe, ne = pipe.encode_prompt("a red door", "cpu", 1, True, negative_prompt=None)
    by_text = sige.session(orig, "a red door", num_inference_steps=2, guidance_scale=7.5).edit(edited)
    by_embeds = sige.session(orig, PromptEmbeds(pe, ne), num_inference_steps=2, guidance_scale=7.5).edit(edited)
    assert torch.equal(by_text.image, by_embeds.image)
