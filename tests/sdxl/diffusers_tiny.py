"""Tiny diffusers models and pipelines (random weights from configs, offline), as diffusers' own fast tests build
them: 32 / 64 channels, two levels, 32 GroupNorm groups, cross-attention width 32."""

from __future__ import annotations

import math

import torch

# SD 1.x layout: heads by count, transformers at the higher resolution level, conv projections.
SD_UNET = dict(
    block_out_channels=(32, 64), layers_per_block=2, sample_size=32, cross_attention_dim=32, attention_head_dim=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
)  # fmt: skip
# SD 2.x layout: head width fixed (heads per level), linear projections.
SD2_UNET = dict(SD_UNET, attention_head_dim=(2, 4), use_linear_projection=True, upcast_attention=True)
# SDXL layout: no transformer at level 0, depth 2, linear projections, text_time added conditioning (6 ids).
SDXL_UNET = dict(
    block_out_channels=(32, 64), layers_per_block=2, sample_size=32, cross_attention_dim=32, attention_head_dim=(2, 4),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    use_linear_projection=True, transformer_layers_per_block=(1, 2), addition_embed_type="text_time",
    addition_time_embed_dim=8, projection_class_embeddings_input_dim=16 + 6 * 8,
)  # fmt: skip
# SDXL refiner layout: aesthetic-score conditioning (5 ids), another context width.
REFINER_UNET = dict(SDXL_UNET, cross_attention_dim=24, projection_class_embeddings_input_dim=16 + 5 * 8)
VAE = dict(
    block_out_channels=(32, 64), layers_per_block=1, latent_channels=4, norm_num_groups=32,
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
)  # fmt: skip


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Seeded weights that keep activations at unit scale (weights ~ 1/sqrt(fan-in), norm scales ~ 1, small
    biases), so that every layer matters in the comparisons."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if p.dim() == 1:
                p.copy_(1 + 0.1 * r if "norm" in name and name.endswith("weight") else 0.1 * r)
            else:
                p.copy_(r / math.sqrt(p[0].numel()))
    return model.eval()


def _out_scale(conv: torch.nn.Module, scale: float) -> None:
    with torch.no_grad():
        conv.weight.mul_(scale)


def unet(kind: str = "sd", seed: int = 0):
    from diffusers import UNet2DConditionModel

    cfg = {"sd": SD_UNET, "sd2": SD2_UNET, "sdxl": SDXL_UNET, "refiner": REFINER_UNET}[kind]
    model = randomize(UNet2DConditionModel(**cfg), seed)
    _out_scale(model.conv_out, 0.3)  # eps predictions of about unit scale, as a trained model's
    return model


def vae(seed: int = 1):
    from diffusers import AutoencoderKL

    model = randomize(AutoencoderKL(**VAE), seed)
    _out_scale(model.decoder.conv_out, 0.1)  # images inside [-1, 1], as a trained decoder's
    return model


def scheduler(kind: str = "ddim", **kw):
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", **kw)
    if kind == "ddim":
        return DDIMScheduler(clip_sample=False, set_alpha_to_one=False, steps_offset=1, **common)
    return EulerDiscreteScheduler(**common)


def sd_pipeline(text_encoder=None, tokenizer=None, **sched):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae(), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet("sd"), scheduler=scheduler(**sched),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip


def sdxl_pipelines():
    """(base, refiner) SDXL pipelines sharing one VAE, without text encoders (prompts as embeddings)."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    v = vae()
    base = StableDiffusionXLPipeline(vae=v, text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None,
                                     unet=unet("sdxl"), scheduler=scheduler("euler"))  # fmt: skip
    refiner = StableDiffusionXLImg2ImgPipeline(
        vae=v, text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None, unet=unet("refiner", 2),
        scheduler=scheduler("euler"), requires_aesthetics_score=True,
    )  # fmt: skip
    return base, refiner


def images(h: int = 64, w: int = 96, seed: int = 3):
    """A smooth original and an edit of a small box of it, ``[1, 3, h, w]`` in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    orig = torch.nn.functional.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), size=(h, w), mode="bilinear")
    orig = orig * 2 - 1
    edited = orig.clone()
    edited[..., 20:30, 40:54] = -orig[..., 20:30, 40:54]
    return orig, edited
