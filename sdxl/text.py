"""Text encoders and the added-conditioning embedders of SD 1.4 and SDXL.

* CLIP ViT-L/14 (SD 1.4: last hidden state; SDXL base: hidden state of layer 11, the penultimate):
  ``transformers.CLIPTextModel`` with a config built here (no download); weights from the checkpoint's
  ``cond_stage_model.transformer.`` / ``conditioner.embedders.0.transformer.`` keys.
* OpenCLIP ViT-bigG/14 text tower (SDXL base embedder 1, refiner embedder 0): written here with the open_clip
  parameter names (``token_embedding``, ``positional_embedding``, ``transformer.resblocks.N.{ln_1, attn,
  ln_2, mlp.c_fc, mlp.c_proj}``, ``ln_final``, ``text_projection``); gives the penultimate hidden state and
  the pooled, projected end-of-text feature.
* Tokenizer: the CLIP BPE (``transformers.CLIPTokenizer``) from a local folder with ``vocab.json`` and
  ``merges.txt`` (the files of openai/clip-vit-large-patch14); OpenCLIP pads with 0 instead of end-of-text.
* Size / crop / aesthetic embedders: sinusoidal embeddings (256 per value) concatenated after the pooled text.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from sige.nn.blocks import timestep_embedding

from .checkpoint import CheckpointError, CheckpointReader

CONTEXT_LEN = 77
SOT, EOT = 49406, 49407


def clip_l_config(**overrides):
    """The CLIP ViT-L/14 text config (transformers), built locally."""
    from transformers import CLIPTextConfig

    kw = dict(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=CONTEXT_LEN, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
        bos_token_id=SOT, eos_token_id=EOT, pad_token_id=1,
    )  # fmt: skip
    kw.update(overrides)
    return CLIPTextConfig(**kw)


class ClipL(nn.Module):
    """CLIP ViT-L text encoder: ``forward(tokens) -> hidden [B, 77, 768]`` (``layer``: last or penultimate)."""

    def __init__(self, layer: str = "last", **config_overrides):
        super().__init__()
        from transformers import CLIPTextModel

        if layer not in ("last", "penultimate"):
            raise ValueError(f"CLIP-L layer must be 'last' or 'penultimate', got {layer!r}")
        self.layer = layer
        self.transformer = CLIPTextModel(clip_l_config(**config_overrides))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.transformer(input_ids=tokens, output_hidden_states=self.layer == "penultimate")
        return out.last_hidden_state if self.layer == "last" else out.hidden_states[-2]


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, width * 4)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(width * 4, width))]
            )
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # x: [L, B, C]
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class OpenClipText(nn.Module):
    """OpenCLIP text tower: ``forward(tokens) -> (penultimate hidden [B, 77, W], pooled [B, D])``."""

    def __init__(self, width: int = 1280, layers: int = 32, heads: int = 20, vocab: int = 49408, embed_dim: int = 1280):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.zeros(CONTEXT_LEN, width))
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.zeros(width, embed_dim))
        self.register_buffer("attn_mask", torch.full((CONTEXT_LEN, CONTEXT_LEN), float("-inf")).triu(1), False)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (self.token_embedding(tokens) + self.positional_embedding).transpose(0, 1)
        blocks = self.transformer.resblocks
        for blk in blocks[:-1]:
            x = blk(x, self.attn_mask)
        penultimate = x.transpose(0, 1)
        last = self.ln_final(blocks[-1](x, self.attn_mask).transpose(0, 1))
        pooled = last[torch.arange(last.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection
        return penultimate, pooled


class Tokenizer:
    """CLIP BPE from local files; ``pad`` is the padding id (end-of-text for CLIP-L, 0 for OpenCLIP)."""

    def __init__(self, folder: str | Path | None):
        if not folder:
            raise FileNotFoundError(
                "no tokenizer: set model.text.tokenizer=PATH to a folder with the CLIP tokenizer files vocab.json and "
                "merges.txt (those of openai/clip-vit-large-patch14); nothing is downloaded at run time"
            )
        folder = Path(folder)
        missing = [n for n in ("vocab.json", "merges.txt") if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"tokenizer folder {folder} lacks {', '.join(missing)} (the CLIP BPE files)")
        from transformers import CLIPTokenizer

        self.tok = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))

    def __call__(self, prompts: Sequence[str], pad: int = EOT) -> torch.Tensor:
        ids = self.tok(list(prompts), truncation=True, max_length=CONTEXT_LEN, padding="max_length")["input_ids"]
        out = torch.tensor(ids, dtype=torch.long)
        if pad != EOT:  # keep the first end-of-text, pad after it
            first_eot = (out == EOT).int().argmax(dim=1, keepdim=True)
            out = torch.where(torch.arange(CONTEXT_LEN)[None] > first_eot, torch.full_like(out, pad), out)
        return out


def _load_text(module: nn.Module, reader: CheckpointReader, prefix: str, dtype: torch.dtype) -> None:
    state = module.state_dict(keep_vars=True)
    keys = set(reader.with_prefix(prefix))
    if not keys:
        raise CheckpointError(f"{reader.path} has no text-encoder tensors under {prefix!r}")
    missing = [k for k in state if prefix + k not in keys]
    if missing:
        raise CheckpointError(
            f"{reader.path}: {len(missing)} text-encoder key(s) missing under {prefix!r}: {missing[:5]}"
        )
    with torch.no_grad():
        for k, t in state.items():
            v = reader.get(prefix + k)
            if tuple(v.shape) != tuple(t.shape):
                raise CheckpointError(
                    f"shape mismatch for {prefix + k}: checkpoint {tuple(v.shape)}, model {tuple(t.shape)}"
                )
            t.data = v.to(dtype) if v.is_floating_point() else v.to(t.dtype)


def load_clip_l(reader: CheckpointReader, prefix: str, layer: str, dtype=torch.float32) -> ClipL:
    """CLIP-L from ``prefix`` (``cond_stage_model.transformer.`` or ``conditioner.embedders.0.transformer.``)."""
    enc = ClipL(layer)
    inner = enc.transformer
    # transformers 4.x nests the text transformer under ``text_model.``, the checkpoints do too
    own = next(iter(inner.state_dict()))
    p = prefix if own.startswith("text_model.") else prefix + "text_model."
    _load_text(inner, reader, p, dtype)
    return enc.eval()


def load_openclip(reader: CheckpointReader, prefix: str, dtype=torch.float32) -> OpenClipText:
    enc = OpenClipText()
    _load_text(enc, reader, prefix, dtype)
    return enc.eval()


def size_embedding(values: Sequence[float], batch: int, dim: int = 256) -> torch.Tensor:
    """``ConcatTimestepEmbedderND``: one sinusoidal embedding of ``dim`` per value, concatenated -> ``[B, n*dim]``."""
    v = torch.tensor([float(x) for x in values])
    return timestep_embedding(v, dim, True, 0.0).reshape(1, -1).expand(batch, -1)
