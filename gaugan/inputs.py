"""Generator inputs and edit masks, as the original GauGAN pipeline builds them.

* semantics = one-hot of the label ids over 35 classes, plus the instance edge map (a pixel is an edge
  when one of its 4 neighbours has a different instance id) as a 36th channel;
* difference mask = ``|original - edited| > 1e-3`` in any input channel, dilated by 1;
* mask pyramid = down to the generator's latent size (4x8) with dilation 2 at every level.

``shape="cross"`` (the default) is the original engine's plus-shaped dilation (``sige.utils``), which the
published MAC counts assume; ``"square"`` dilates with a square.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gaugan.labels import NUM_LABELS
from sige import mask as sige_mask
from sige.mask import compute_difference_mask

MASK_EPS = 1e-3
MASK_DILATION = 1
DOWNSAMPLE_DILATION = 2


def _as_long(t: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    if isinstance(t, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(t))
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or ndarray, got {type(t).__name__}")
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer ids, got {t.dtype}")
    return t


def _batched(t: torch.Tensor, name: str) -> torch.Tensor:
    """[H, W] | [B, H, W] | [B, 1, H, W] -> [B, 1, H, W]."""
    if t.dim() == 2:
        return t[None, None]
    if t.dim() == 3:
        return t[:, None]
    if t.dim() == 4 and t.shape[1] == 1:
        return t
    raise ValueError(f"{name} must be [H, W], [B, H, W] or [B, 1, H, W], got {tuple(t.shape)}")


def instance_edges(instance: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``float [B, 1, H, W]``: 1 where a 4-neighbour has a different instance id."""
    t = _batched(_as_long(instance, "instance map"), "instance map")
    edge = torch.zeros(t.shape, dtype=torch.bool, device=t.device)
    dw = t[..., :, 1:] != t[..., :, :-1]
    dh = t[..., 1:, :] != t[..., :-1, :]
    edge[..., :, 1:] |= dw
    edge[..., :, :-1] |= dw
    edge[..., 1:, :] |= dh
    edge[..., :-1, :] |= dh
    return edge.float()


def semantics(
    label: torch.Tensor | np.ndarray,
    instance: torch.Tensor | np.ndarray | None = None,
    num_classes: int = NUM_LABELS,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """One-hot label ids (plus instance edges when ``instance`` is given): ``[B, C(+1), H, W]``."""
    lab = _batched(_as_long(label, "label map"), "label map").long()
    if device is not None:
        lab = lab.to(device)
    if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= num_classes):
        raise ValueError(
            f"label ids must lie in 0..{num_classes - 1} (Cityscapes label ids), got {int(lab.min())}..{int(lab.max())}"
        )
    sem = torch.zeros((lab.shape[0], num_classes, *lab.shape[2:]), dtype=dtype, device=lab.device)
    sem.scatter_(1, lab, 1.0)
    if instance is None:
        return sem
    inst = _batched(_as_long(instance, "instance map"), "instance map").to(lab.device)
    if inst.shape[0] != lab.shape[0] or inst.shape[2:] != lab.shape[2:]:
        raise ValueError(f"instance map {tuple(inst.shape)} does not match the label map {tuple(lab.shape)}")
    return torch.cat([sem, instance_edges(inst).to(dtype)], dim=1)


@dataclass
class EditMasks:
    """The difference mask of an edit (after the first dilation) and its resolution pyramid."""

    mask: torch.Tensor  # bool [H, W] (or [B, H, W] for a batch of edits)
    pyramid: dict[tuple[int, int], torch.Tensor]
    raw_fraction: float  # changed pixels before dilation

    @property
    def edited_fraction(self) -> float:
        """Fraction of the dilated difference mask (what the original runner reports as the sparsity)."""
        return sige_mask.edited_fraction(self.mask)


def edit_masks(
    original: torch.Tensor,
    edited: torch.Tensor,
    min_res: Sequence[int] = (4, 8),
    eps: float = MASK_EPS,
    dilation: int = MASK_DILATION,
    downsample_dilation: int = DOWNSAMPLE_DILATION,
    shape: str = "cross",
) -> EditMasks:
    """Difference mask of two semantics tensors and its pyramid down to ``min_res`` (the latent size)."""
    if original.shape != edited.shape:
        raise ValueError(
            f"original and edited semantics differ in shape: {tuple(original.shape)} vs {tuple(edited.shape)}"
        )
    raw = compute_difference_mask(original, edited, eps=eps)
    mask = sige_mask.dilate_mask(raw, dilation, shape=shape)
    pyramid = sige_mask.downsample_mask(mask, tuple(min_res), dilation=downsample_dilation, shape=shape)
    return EditMasks(mask=mask, pyramid=pyramid, raw_fraction=sige_mask.edited_fraction(raw))


def paint_stroke(
    label: np.ndarray, instance: np.ndarray, stroke: np.ndarray, new_label: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Edit a label/instance map by painting ``stroke`` (bool [H, W]) with one class.

    ``new_label`` defaults to the class the stroke covers least among car, vegetation, road and building, so
    that (almost) every stroke pixel changes; the painted region becomes one new instance (stuff classes use
    the class id as instance id, things ``class*1000 + k`` as in Cityscapes).
    """
    if stroke.shape != label.shape or label.shape != instance.shape:
        raise ValueError(f"stroke {stroke.shape}, label {label.shape} and instance {instance.shape} must match")
    if new_label is None:
        candidates = (26, 21, 7, 11)  # car, vegetation, road, building
        new_label = min(candidates, key=lambda c: int((label[stroke] == c).sum()))
    lab, inst = label.copy(), instance.copy()
    lab[stroke] = new_label
    thing = new_label >= 24  # person..bicycle (and caravan/trailer) are "things" with instance ids
    inst[stroke] = new_label * 1000 + 999 if thing else new_label
    return lab, inst
