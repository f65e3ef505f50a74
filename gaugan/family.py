"""GauGAN / GAN Compression behind the harness: the efficiency case, ``task=generate`` and the quality images.

Edits (``configs/edit``): ``cityscapes_example`` (the paper's example maps), ``cityscapes_edit`` (benchmark set
items by image id, symmetric), ``synthetic`` (a brush stroke of ``area`` painted with one class into the
example's ground-truth map), ``custom`` (``edit.original`` / ``edit.edited`` label-id ``.npy`` files, or
mappings ``{label: PATH, instance: PATH}``; optional ``edit.mask``).

Quality (``task=quality model=gaugan_cityscapes edit=cityscapes_edit weights=pretrained``): both generators
run on each edited map (the SIGE one after a full pass on the original map); metrics are DRN-D-105 mIoU
against the edited label maps (``task.masked``: inside each edit's mask only), FID against the set's real
photos, and PSNR / LPIPS against the ``real`` photos (the original's default) and / or the dense generator's
images (``original``), as ``task.references`` lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gaugan.checkpoints import load_checkpoint
from gaugan.data import CityscapesEditDataset, EditSample
from gaugan.inputs import EditMasks, edit_masks, paint_stroke, semantics
from gaugan.labels import colorize
from gaugan.models import SPADEGenerator, build_generator
from sige import mask as sige_mask
from sigebench.edits import EditError, load_edit, synthetic_stroke_mask
from sigebench.family import Case, Display, QualitySet
from sigebench.images import save_image
from sigebench.weights import resolve_weights

COMPONENTS = ("generator",)
MODEL_KEYS = {
    "name", "family", "architecture", "ngf", "config_str", "label_nc", "use_instance", "crop_size", "aspect_ratio",
    "num_upsampling_layers", "num_sparse_layers", "main_block_size", "shortcut_block_size", "mask", "checkpoint",
}  # fmt: skip
QUALITY_METRICS = ("miou", "fid", "psnr", "lpips")
EXTRA_METRICS = ("miou",)
EXAMPLE_EDIT = {
    "name": "cityscapes_example",
    "kind": "files",
    "manifest": "example_edits",
    "original": {"label": "cityscapes/gt_label.npy", "instance": "cityscapes/gt_instance.npy"},
    "edited": {"label": "cityscapes/synthetic_label.npy", "instance": "cityscapes/synthetic_instance.npy"},
}  # fmt: skip  (synthetic strokes are painted into this example's ground-truth map)


# --------------------------------------------------------------------------------------------- the model


def load_model(
    model_cfg: Mapping[str, Any], weights: str | None, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[SPADEGenerator, str]:
    """The generator a model config describes, with ``weights`` (see :mod:`sigebench.weights`), moved; and the
    ``weights`` label of its rows."""
    keys = ("ngf", "config_str", "use_instance", "crop_size", "aspect_ratio", "num_upsampling_layers",
            "num_sparse_layers", "main_block_size", "shortcut_block_size")  # fmt: skip
    kwargs = {k: model_cfg[k] for k in keys if model_cfg.get(k) is not None}
    if "label_nc" in model_cfg:
        kwargs["label_nc"] = int(model_cfg["label_nc"])
    if "aspect_ratio" in kwargs:
        kwargs["aspect_ratio"] = float(kwargs["aspect_ratio"])
    model = build_generator(model_cfg.get("architecture", "gaugan"), **kwargs).eval()
    path = resolve_weights(weights, model_cfg.get("checkpoint"), model_cfg["name"])
    if path is not None:
        load_checkpoint(model, path)
    return model.to(device=device, dtype=dtype), "random" if path is None else str(path)


# --------------------------------------------------------------------------------------------- the edits


def resize_map(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest resize of an id map (or mask) to the generator's output size (the original's label loading)."""
    if tuple(a.shape) == tuple(size):
        return a
    t = torch.from_numpy(a.astype(np.int64))[None, None].float()
    return F.interpolate(t, size=size, mode="nearest")[0, 0].long().numpy().astype(a.dtype)


def _label_pair(x: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(label, instance) id maps of an edit input: an array (its own instance map) or ``{label, instance}``."""
    if isinstance(x, Mapping):
        if "label" not in x:
            raise EditError(f"{what}: a mapping input needs a 'label' map (and optionally 'instance'), got {sorted(x)}")
        label = x["label"]
        instance = x.get("instance", label)
    else:
        label = instance = x
    for name, a in (("label", label), ("instance", instance)):
        if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
            raise EditError(
                f"{what} ({name}): expected an integer label-id map [H, W] (a .npy array), got {a.dtype} {a.shape}"
                + (" - an RGB image; give the label ids, not a colourised map" if a.ndim == 3 else "")
            )
    if label.shape != instance.shape:
        raise EditError(f"{what}: label map {label.shape} and instance map {instance.shape} differ in size")
    return label, instance


def edit_samples(edit: Mapping[str, Any], size: tuple[int, int] = (256, 512)) -> Iterator[EditSample]:
    """The edit(s) an edit config names (one for every kind but a ``cityscapes_edit`` selection)."""
    kind = edit.get("kind")
    if kind == "dataset":
        ds = CityscapesEditDataset(edit.get("root"), edit.get("image_ids"), bool(edit.get("symmetric", True)))
        index = edit.get("index")
        if index is None:
            yield from ds
        else:
            yield ds[int(index)]
        return
    e = load_edit(edit)
    if kind == "synthetic":
        base = load_edit(EXAMPLE_EDIT)
        label, inst = (resize_map(a, size) for a in _label_pair(base.original, "edit.original"))
        stroke = synthetic_stroke_mask(size[0], size[1], e.area, e.seed)
        new_label, new_inst = paint_stroke(label, inst, stroke)
        yield EditSample(f"synthetic_{edit['area']}_{e.seed}", label, inst, new_label, new_inst)
        return
    if e.original is None or e.edited is None:
        raise EditError(f"GauGAN edits are label-map pairs: edit {e.name!r} needs edit.original and edit.edited")
    o, ed = _label_pair(e.original, "edit.original"), _label_pair(e.edited, "edit.edited")
    if edit.get("reverse"):
        o, ed = ed, o
    name = e.name if kind == "files" else Path(str(edit["edited"] if not isinstance(edit["edited"], Mapping)
                                                  else edit["edited"]["label"])).stem  # fmt: skip
    yield EditSample(name, o[0], o[1], ed[0], ed[1], mask=e.mask)


def example_sample(reverse: bool = False) -> EditSample:
    """The paper's example edit (ground truth -> synthetic labels; ``reverse``: the other way)."""
    return next(edit_samples({**EXAMPLE_EDIT, "reverse": reverse}))


def inputs(
    sample: EditSample,
    model: SPADEGenerator,
    mask_cfg: Mapping[str, Any] | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, EditMasks]:
    """Semantics of the original and edited maps and the edit's masks, at the model's output size (a mask the
    edit gives replaces the difference mask, then the same pyramid)."""
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
    if sample.mask is not None:
        m = torch.from_numpy(resize_map(np.asarray(sample.mask).astype(np.uint8), size).astype(bool))
        pyramid = sige_mask.downsample_mask(m, (model.sh, model.sw), int(mask_cfg.get("downsample_dilation", 2)),
                                            shape=shape)  # fmt: skip
        masks = EditMasks(m, pyramid, float(m.float().mean()))
    masks.pyramid = {k: v.to(device) for k, v in masks.pyramid.items()}
    return original, edited, masks


# --------------------------------------------------------------------------------------------- the harness


def prepare(
    model_cfg: Mapping[str, Any],
    edit: Mapping[str, Any],
    component: str,
    device: str,
    dtype: torch.dtype,
    weights: str | None,
) -> Case:
    model, label = load_model(model_cfg, weights, device, dtype)
    sample = next(iter(edit_samples(edit, model.output_size)))
    original, edited, masks = inputs(sample, model, model_cfg.get("mask"), device, dtype)
    return Case(
        model=model,
        original=(original,),
        edited=(edited,),
        masks=masks.pyramid,
        configure=configure_variant,
        edited_fraction=round(masks.edited_fraction, 6),
        weights=label,
        columns={
            "raw_edited_fraction": round(masks.raw_fraction, 6),
            "sample": sample.name,
            "num_sparse_layers": model.num_sparse_layers,
            "sparse_blocks": " ".join(model.sparse_block_names()),
        },
        display=Display(
            original=colorize(resize_map(np.asarray(sample.original_label), model.output_size)),
            edited=colorize(resize_map(np.asarray(sample.edited_label), model.output_size)),
            mask=masks.mask.cpu().numpy(),
            size=tuple(model.output_size),
            # the float outputs: 8-bit images would turn the difference map into +-1-level rounding noise
            output=lambda out: out[0].float().cpu().numpy(),
        ),
    )


def configure_variant(model: SPADEGenerator, variant: str) -> None:
    """``sige``: the paper's sparse placement (conv_img dense); ``sige_fast``: conv_img sparse as well."""
    model.sparse_rgb = variant == "sige_fast"


@torch.no_grad()
def run_edit(
    model: SPADEGenerator,
    original: torch.Tensor,
    edited: torch.Tensor,
    pyramid: Mapping,
    block_grid: str = "trimmed",
    variants: tuple[str, ...] = ("original", "sige"),
) -> dict[str, torch.Tensor]:
    """``{"original": dense(edited), "sige": sparse(edited)}`` (a full pass on the original in between)."""
    out = {}
    model.clear_cache()
    model.set_mode("full")
    if "original" in variants:
        out["original"] = model(edited).clone()
    if "sige" in variants:
        model(original)
        model.set_masks(pyramid, block_grid=block_grid)
        model.set_mode("sparse")
        out["sige"] = model(edited).clone()
    model.set_mode("full")
    model.clear_cache()
    return out


def generate(cfg: Mapping[str, Any]) -> list[dict]:
    """``<out_dir>/<model>/<edit>/{original,sige}/<name>.png`` (the dense and the sparse generator on the edited
    map) and the colourised ``original_label/`` and ``edited_label/`` maps; one JSON line per edit."""
    model_cfg, edit, task = cfg["model"], cfg["edit"], cfg["task"]
    device, dtype = cfg["device"]["name"], getattr(torch, cfg.get("dtype", "float32"))
    variants = tuple(task.get("variants") or ("original", "sige"))
    bad = [v for v in variants if v not in ("original", "sige")]
    if bad:
        raise ValueError(f"task.variants for the GauGAN models: original and/or sige, got {bad}")
    out_dir = Path(task.get("out_dir", "results/generate")) / model_cfg["name"] / edit["name"]
    model, label = load_model(model_cfg, cfg.get("weights"), device, dtype)
    if label == "random":
        print(json.dumps({"warning": "random weights: images are noise; pass weights=pretrained or a path"}))
    records = []
    for sample in edit_samples(edit, model.output_size):
        original, edited, masks = inputs(sample, model, model_cfg.get("mask"), device, dtype)
        images = run_edit(model, original, edited, masks.pyramid, task.get("block_grid", "trimmed"), variants)
        for key, img in images.items():
            save_image(img, out_dir / key / f"{sample.name}.png")
        save_image(colorize(sample.original_label), out_dir / "original_label" / f"{sample.name}.png")
        save_image(colorize(sample.edited_label), out_dir / "edited_label" / f"{sample.name}.png")
        rec = {"name": sample.name, "out_dir": str(out_dir), "edited_fraction": round(masks.edited_fraction, 6),
               "weights": label}  # fmt: skip
        if len(images) == 2:
            rec["max_abs_diff_sige_vs_original"] = float((images["sige"] - images["original"]).abs().max())
        print(json.dumps(rec))
        records.append(rec)
    return records


def drn_weights(given: str | None) -> Path:
    """DRN-D-105 (Cityscapes) for mIoU: the given path, or the gaugan_checkpoints item through the data layer."""
    from sigebench.data import DataError, data_path

    if given:
        p = Path(given)
        if not p.is_file():
            raise FileNotFoundError(f"task.drn_weights={given!r}: no such file")
        return p
    try:
        return data_path("gaugan_checkpoints", "drn-d-105_ms_cityscapes.pth", quiet=True)
    except DataError as e:
        raise FileNotFoundError(
            "mIoU needs DRN-D-105 trained on Cityscapes (drn-d-105_ms_cityscapes.pth, item of "
            "datasets/gaugan_checkpoints.yaml): pass task.drn_weights=PATH or put it under $SIGE_DATA/gaugan/ "
            f"({e})"
        ) from e


def quality_preflight(cfg: Mapping[str, Any], metrics: list[str]) -> None:
    """Fail before any image is generated when mIoU's DRN weights are missing."""
    if "miou" in metrics:
        drn_weights(cfg["task"].get("drn_weights"))


def quality_set(cfg: Mapping[str, Any], folder: Path) -> QualitySet:
    """Generate (resumably) the dense and SIGE images of every selected edit into ``folder``, with the real photo
    of each edit; mIoU is the family's own metric."""
    from gaugan.drn import confusion, load_drn, miou, predict
    from gaugan.labels import to_train_ids
    from sigebench.images import read_image

    model_cfg, edit, task = cfg["model"], cfg["edit"], cfg["task"]
    metrics = list(task.get("metrics") or QUALITY_METRICS)
    references = list(task.get("references") or ["real", "original"])
    bad = [r for r in references if r not in ("real", "original")]
    if bad:
        raise ValueError(f"task.references for the GauGAN models: real and/or original, got {bad}")
    drn_path = drn_weights(task.get("drn_weights")) if "miou" in metrics else None  # before any image
    device, dtype = cfg["device"]["name"], getattr(torch, cfg.get("dtype", "float32"))
    model, label = load_model(model_cfg, cfg.get("weights"), device, dtype)
    folders = {v: folder / v for v in ("original", "sige")}
    labels, masks, names, real_names = {}, {}, [], []
    for sample in edit_samples(edit, model.output_size):
        paths = {v: f / f"{sample.name}.png" for v, f in folders.items()}
        original, edited, m = inputs(sample, model, model_cfg.get("mask"), device, dtype)
        if not all(p.is_file() for p in paths.values()):
            images = run_edit(model, original, edited, m.pyramid, task.get("block_grid", "trimmed"))
            for v, img in images.items():
                save_image(img, paths[v])
        real = folder / "real" / f"{sample.name}.png"
        if sample.image_path is not None and sample.image_path.is_file() and not real.is_file():  # the labels' photo
            from PIL import Image

            with Image.open(sample.image_path) as im:
                photo = np.asarray(im.convert("RGB").resize(model.output_size[::-1], Image.BICUBIC))
            save_image(photo, real)
        labels[sample.name] = resize_map(np.asarray(sample.edited_label), model.output_size)
        mask = m.mask.cpu().numpy()
        if sample.mask_path is not None:  # the benchmark set's own mask (what the original's masked metrics used)
            mask = resize_map(np.load(sample.mask_path).astype(np.uint8), model.output_size).astype(bool)
        masks[sample.name] = mask
        names.append(sample.name)
        if sample.gt_id is not None:
            real_names.append(sample.gt_id)
    del model
    has_real = all((folder / "real" / f"{n}.png").is_file() for n in names)
    if "real" in references and not has_real:
        print(json.dumps({"note": "no real photos for these edits (only the benchmark set has them); PSNR / LPIPS "
                          "compare with the dense generator only"}))  # fmt: skip
        references = [r for r in references if r != "real"]
    compare = [(v, "real") for v in ("original", "sige") if "real" in references]
    compare += [("sige", "original")] if "original" in references else []
    masked = bool(task.get("masked"))

    def miou_metric(variant: str, images: Path, selected: list[str]) -> dict[str, Any]:
        drn = load_drn(drn_path, device)
        hist = np.zeros((19, 19), dtype=np.int64)
        for n in selected:
            pred = predict(drn, read_image(images / f"{n}.png"), device)[0]
            hist += confusion(pred, to_train_ids(labels[n]), mask=masks[n] if masked else None)
        return {"value": miou(hist)[0], "count": len(selected), "reference": "edited labels", "masked": masked,
                "pixels": int(hist.sum())}  # fmt: skip

    root = None
    if edit.get("kind") == "dataset":
        root = CityscapesEditDataset(edit.get("root"), edit.get("image_ids"), bool(edit.get("symmetric", True))).root
    return QualitySet(
        variants=folders,
        names=names,
        references={"real": folder / "real", "original": folders["original"]},
        compare=compare,
        fid_reference=(root / "images") if root is not None else None,
        fid_reference_names=sorted(set(real_names)) or None,
        masks=masks,
        extra={"miou": miou_metric},
        weights=label,
    )
