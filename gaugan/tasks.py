"""GauGAN / GAN Compression behind ``scripts/run.py``: efficiency, generate (and quality, see gaugan.quality).

    python scripts/run.py task=efficiency model=gaugan_cityscapes edit=cityscapes_example
    python scripts/run.py task=efficiency model=gan_compression_cityscapes edit=synthetic edit.area=0.012
    python scripts/run.py task=generate model=gaugan_cityscapes edit=cityscapes_edit edit.image_ids=[1501]

Edits (``configs/edit``): ``cityscapes_example`` (the paper's example maps), ``cityscapes_edit`` (benchmark set
items by image id, symmetric), ``synthetic`` (a brush stroke of ``area`` painted with one class into the
example's ground-truth map), ``custom`` (``edit.original`` / ``edit.edited`` label-id ``.npy`` files, optional
``+edit.original_instance`` / ``+edit.edited_instance``, optional ``edit.mask``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gaugan.checkpoints import load_checkpoint, resolve_weights
from gaugan.data import CityscapesEditDataset, EditSample, example_sample
from gaugan.inputs import EditMasks, edit_masks, paint_stroke, semantics
from gaugan.models import SPADEGenerator, build_generator

COMPONENT = "generator"
SYNTHETIC_BASE = "cityscapes_example"  # synthetic strokes are painted into the example's ground-truth map


# --------------------------------------------------------------------------------------------- the model


def build_model(model_cfg: Mapping[str, Any], **overrides: Any) -> SPADEGenerator:
    """The generator a model config describes (random weights)."""
    keys = ("ngf", "config_str", "use_instance", "crop_size", "aspect_ratio", "num_upsampling_layers",
            "num_sparse_layers", "main_block_size", "shortcut_block_size")  # fmt: skip
    kwargs = {k: model_cfg[k] for k in keys if model_cfg.get(k) is not None}
    if "label_nc" in model_cfg:
        kwargs["label_nc"] = int(model_cfg["label_nc"])
    if "aspect_ratio" in kwargs:
        kwargs["aspect_ratio"] = float(kwargs["aspect_ratio"])
    kwargs.update(overrides)
    return build_generator(model_cfg.get("architecture", "gaugan"), **kwargs).eval()


def load_model(
    model_cfg: Mapping[str, Any], weights: str | None, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[SPADEGenerator, str]:
    """Build, load ``weights`` (None | "pretrained" | path) and move; returns (model, weights label)."""
    model = build_model(model_cfg)
    path = resolve_weights(
        weights, model_cfg.get("architecture", "gaugan"), model_cfg.get("config_str"), model_cfg.get("checkpoint")
    )
    if path is not None:
        load_checkpoint(model, path)
    return model.to(device=device, dtype=dtype), ("random" if path is None else str(path))


# --------------------------------------------------------------------------------------------- the edits


def resize_map(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest resize of an id map to the generator's output size (the original's label loading)."""
    if tuple(a.shape) == tuple(size):
        return a
    t = torch.from_numpy(a.astype(np.int64))[None, None].float()
    return F.interpolate(t, size=size, mode="nearest")[0, 0].long().numpy().astype(a.dtype)


def edit_samples(edit: Mapping[str, Any], size: tuple[int, int] = (256, 512)) -> Iterator[EditSample]:
    """The edit(s) an edit config names (one for every kind but a ``cityscapes_edit`` selection)."""
    kind = edit.get("kind")
    if kind == "label_maps":
        files = {k: edit[k] for k in ("manifest", "original_label", "original_instance", "edited_label",
                                      "edited_instance") if edit.get(k)}  # fmt: skip
        yield example_sample(reverse=bool(edit.get("reverse", False)), files=files)
    elif kind == "cityscapes_edit":
        ds = CityscapesEditDataset(edit.get("root"), edit.get("image_ids"), bool(edit.get("symmetric", True)))
        index = edit.get("index")
        if index is None:
            yield from ds
        else:
            yield ds[int(index)]
    elif kind == "synthetic":
        from sige.edits import synthetic_stroke_mask

        base = example_sample()
        label, inst = resize_map(base.original_label, size), resize_map(base.original_instance, size)
        stroke = synthetic_stroke_mask(size[0], size[1], float(edit["area"]), int(edit.get("seed", 0)))
        new_label, new_inst = paint_stroke(label, inst, stroke)
        yield EditSample(f"synthetic_{edit['area']}_{edit.get('seed', 0)}", label, inst, new_label, new_inst)
    elif kind == "custom":
        o, e = np.load(edit["original"]), np.load(edit["edited"])
        oi = np.load(edit["original_instance"]) if edit.get("original_instance") else o
        ei = np.load(edit["edited_instance"]) if edit.get("edited_instance") else e
        yield EditSample(Path(edit["edited"]).stem, o, oi, e, ei)
    else:
        raise ValueError(
            f"GauGAN edits are label maps: use edit=cityscapes_example, cityscapes_edit, synthetic or custom "
            f"(label-id .npy files); got edit {edit.get('name')!r} (kind {kind!r})"
        )


def prepare(
    sample: EditSample,
    model: SPADEGenerator,
    mask_cfg: Mapping[str, Any] | None = None,
    mask_file: str | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, EditMasks]:
    """Semantics of the original and edited maps and the edit's masks, at the model's output size."""
    mask_cfg = dict(mask_cfg or {})
    size = model.output_size
    use_instance = model.spec.use_instance
    tensors = []
    for lab, inst in ((sample.original_label, sample.original_instance), (sample.edited_label, sample.edited_instance)):
        lab = resize_map(np.asarray(lab), size)
        inst = resize_map(np.asarray(inst), size) if use_instance else None
        tensors.append(semantics(lab, inst, num_classes=model.spec.num_classes, dtype=dtype, device=device))
    original, edited = tensors
    shape = mask_cfg.get("shape", "cross")
    masks = edit_masks(
        original.float(), edited.float(), (model.sh, model.sw), float(mask_cfg.get("eps", 1e-3)),
        int(mask_cfg.get("dilation", 1)), int(mask_cfg.get("downsample_dilation", 2)), shape,
    )  # fmt: skip
    if mask_file:  # a user mask replaces the difference mask (then the same pyramid)
        from sige import mask as sige_mask

        m = torch.from_numpy(resize_map(np.load(mask_file).astype(np.uint8), size).astype(bool))
        pyramid = sige_mask.downsample_mask(m, (model.sh, model.sw), int(mask_cfg.get("downsample_dilation", 2)),
                                            shape=shape)  # fmt: skip
        masks = EditMasks(m, pyramid, float(m.float().mean()))
    masks.pyramid = {k: v.to(device) for k, v in masks.pyramid.items()}
    return original, edited, masks


# --------------------------------------------------------------------------------------------- efficiency


def configure_variant(model_cfg: Mapping[str, Any]):
    """Per-variant block sizes: the original's for ``sige``, ``sige_fast_block_sizes`` for ``sige_fast``."""
    from sige.nn.tuning import set_block_sizes

    paper = {3: int(model_cfg.get("main_block_size", 6)), 1: int(model_cfg.get("shortcut_block_size", 4))}
    fast = {int(k): int(v) for k, v in (model_cfg.get("sige_fast_block_sizes") or {}).items()}

    def configure(model: SPADEGenerator, variant: str) -> None:
        set_block_sizes(model, {**paper, **fast} if variant == "sige_fast" else paper)

    return configure


def efficiency(
    model_cfg: Mapping[str, Any],
    edit: Mapping[str, Any],
    component: str | None,
    variants: list[str],
    timing,
    device: str,
    dtype: torch.dtype,
    weights: str | None = None,
) -> list[dict]:
    """Benchmark-contract rows of the generator on one edit (see sige.tasks / sige.bench)."""
    from sige.bench import measure_variants

    if component not in (None, COMPONENT):
        raise ValueError(f"the GauGAN models have one component, {COMPONENT!r}; got component={component!r}")
    model, weights_label = load_model(model_cfg, weights, device, dtype)
    sample = next(iter(edit_samples(edit, model.output_size)))
    original, edited, masks = prepare(sample, model, model_cfg.get("mask"), edit.get("mask"), device, dtype)
    rows = measure_variants(
        model, (original,), (edited,), masks.pyramid, variants, timing, device, configure_variant(model_cfg)
    )
    for r in rows:
        r.update(
            edited_fraction=round(masks.edited_fraction, 6),
            raw_edited_fraction=round(masks.raw_fraction, 6),
            sample=sample.name,
            num_sparse_layers=model.num_sparse_layers,
            sparse_blocks=" ".join(model.sparse_block_names()),
        )
    return rows


# --------------------------------------------------------------------------------------------- generate


def to_image(t: torch.Tensor) -> np.ndarray:
    """Generator output ``[3, H, W]`` in [-1, 1] -> ``uint8 [H, W, 3]`` (as the original's tensor2im)."""
    arr = ((t.detach().float().cpu().clamp(-1, 1) + 1) / 2 * 255.0).permute(1, 2, 0).numpy()
    return arr.astype(np.uint8)


def save_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@torch.no_grad()
def run_edit(
    model: SPADEGenerator,
    original: torch.Tensor,
    edited: torch.Tensor,
    pyramid: Mapping,
    block_grid: str = "trimmed",
    dense: bool = True,
) -> dict[str, torch.Tensor]:
    """``{"original_model": dense(edited), "sige": sparse(edited)}`` (full pass on the original in between)."""
    out = {}
    model.clear_cache()
    model.set_mode("full")
    if dense:
        out["original_model"] = model(edited).clone()
    model(original)
    model.set_masks(pyramid, block_grid=block_grid)
    model.set_mode("sparse")
    out["sige"] = model(edited).clone()
    model.set_mode("full")
    model.clear_cache()
    return out


def generate(cfg: Mapping[str, Any]) -> list[dict]:
    """Write ``<out_dir>/{original_model,sige}/<name>.png`` (the original generator and the sparse one on the
    edited map) and the colourised ``original_label/`` and ``edited_label/`` maps; print one JSON line per edit."""
    from gaugan.labels import colorize

    model_cfg, edit = cfg["model"], cfg["edit"]
    opts = dict(model_cfg.get("generate_options") or {})
    device, dtype = cfg["device"]["name"], getattr(torch, cfg.get("dtype", "float32"))
    out_dir = Path(opts.get("out_dir") or f"results/generate/{model_cfg['name']}") / edit["name"]
    model, weights_label = load_model(model_cfg, cfg.get("weights"), device, dtype)
    if weights_label == "random":
        print(json.dumps({"warning": "random weights: images are noise; pass weights=pretrained or a path"}))
    records = []
    for sample in edit_samples(edit, model.output_size):
        original, edited, masks = prepare(sample, model, model_cfg.get("mask"), edit.get("mask"), device, dtype)
        images = run_edit(model, original, edited, masks.pyramid, opts.get("block_grid", "trimmed"),
                          dense="original_model" in opts.get("variants", ["original_model", "sige"]))  # fmt: skip
        for key, img in images.items():
            save_png(to_image(img[0]), out_dir / key / f"{sample.name}.png")
        if opts.get("save_labels", True):
            save_png(colorize(sample.original_label), out_dir / "original_label" / f"{sample.name}.png")
            save_png(colorize(sample.edited_label), out_dir / "edited_label" / f"{sample.name}.png")
        rec = {"name": sample.name, "out_dir": str(out_dir), "edited_fraction": round(masks.edited_fraction, 6),
               "weights": weights_label}  # fmt: skip
        if "original_model" in images:
            rec["max_abs_diff_sige_vs_original_model"] = float((images["sige"] - images["original_model"]).abs().max())
        print(json.dumps(rec))
        records.append(rec)
    return records


def quality(cfg: Mapping[str, Any]) -> list[dict]:
    """See :func:`gaugan.quality.quality`."""
    from gaugan.quality import quality as _quality

    return _quality(cfg)


def panel(model_cfg: Mapping[str, Any]) -> dict:
    """Qualitative figure of the Cityscapes example: colourised label maps, dense and sparse generator outputs
    (random weights)."""
    import yaml

    from gaugan.labels import colorize
    from sige.bench import panel_outputs

    edit = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "configs" / "edit" / "cityscapes_example.yaml").read_text()
    )
    model, _ = load_model(model_cfg, None, "cpu", torch.float32)
    model.eval()
    sample = next(iter(edit_samples(edit, model.output_size)))
    original, edited, masks = prepare(sample, model, model_cfg.get("mask"), None)
    out = panel_outputs(model, (original,), (edited,), masks.pyramid, tuple(model.output_size))
    return {
        "title": f"{model_cfg['name']}: Cityscapes example ({masks.edited_fraction:.2%} edited; random weights)",
        "weights": "random",
        "original": colorize(resize_map(np.asarray(sample.original_label), model.output_size)),
        "edited": colorize(resize_map(np.asarray(sample.edited_label), model.output_size)),
        # the float outputs: 8-bit images would turn the difference map into +-1-level rounding noise
        "dense": out["dense"][0].float().numpy(),
        "sparse": out["sparse"][0].float().numpy(),
        "mask": masks.mask.cpu().numpy(),
        "blocks": out["blocks"],
    }
