"""DRN-D-105 Cityscapes segmentation (the network GauGAN's mIoU is measured with) and the mIoU itself.

Architecture (dilated residual network, type D; Yu, Koltun, Funkhouser 2017): a 7x7 stem and two plain
conv stages (16, 32 channels; stride 1 and 2), four bottleneck stages (3, 4, 23, 3 blocks of width 64, 128,
256, 512, expansion 4; strides 2, 2 and then dilation 2 and 4 instead of striding), two plain 3x3 stages
(512 channels, dilation 2 then 1): output stride 8. The segmentation head is a 1x1 conv to the 19
Cityscapes train classes and a fixed bilinear x8 transposed conv (kernel 16, stride 8, padding 4, one
group per class). State-dict keys follow the released ``drn-d-105_ms_cityscapes.pth``: ``base.<stage>...``
(stages 0..8), ``seg.*``, ``up.weight``.

Evaluation as the original benchmark: the generated 256x512 image (no resize; this is the resolution
variant used) normalised with the Cityscapes mean/std below, argmax of the upsampled logits, ground truth =
the label map the image was generated from mapped to train ids (255 ignored), one 19x19 confusion matrix
accumulated over the whole set (optionally only edit-mask pixels), IoU = diag / (row + col - diag), mIoU =
nanmean x 100.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)
NUM_CLASSES = 19
DRN_D_105 = {"layers": (1, 1, 3, 4, 23, 3, 1, 1), "channels": (16, 32, 64, 128, 256, 512, 512, 512)}


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample: bool = False):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = (
            nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
            if downsample
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)), inplace=True)
        h = F.relu(self.bn2(self.conv2(h)), inplace=True)
        h = self.bn3(self.conv3(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)), inplace=True)


def _plain_stage(cin: int, cout: int, convs: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(convs):
        mods += [
            nn.Conv2d(cin if i == 0 else cout, cout, 3, stride=stride if i == 0 else 1, padding=dilation,
                      dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]  # fmt: skip
    return nn.Sequential(*mods)


def _bottleneck_stage(cin: int, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    out = planes * Bottleneck.expansion
    mods = [Bottleneck(cin, planes, stride, dilation, downsample=stride != 1 or cin != out)]
    mods += [Bottleneck(out, planes, 1, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*mods)


def bilinear_upsampling_weight(classes: int, kernel: int = 16) -> torch.Tensor:
    """The fixed weight of the x8 transposed conv (a separable bilinear kernel, one per class)."""
    f = math.ceil(kernel / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    r = 1 - torch.abs(torch.arange(kernel, dtype=torch.float64) / f - c)
    return (r[:, None] * r[None, :]).float().expand(classes, 1, kernel, kernel).clone()


class DRNSeg(nn.Module):
    """DRN type D backbone + 1x1 classifier + fixed bilinear x8 upsampling; ``forward`` returns logits."""

    def __init__(
        self,
        layers: Sequence[int] = DRN_D_105["layers"],
        channels: Sequence[int] = DRN_D_105["channels"],
        classes: int = NUM_CLASSES,
    ):
        super().__init__()
        c, n = list(channels), list(layers)
        stem = nn.Sequential(nn.Conv2d(3, c[0], 7, padding=3, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True))
        stages = [stem, _plain_stage(c[0], c[0], n[0]), _plain_stage(c[0], c[1], n[1], stride=2)]
        cin = c[1]
        for planes, blocks, stride, dil in (
            (c[2], n[2], 2, 1),
            (c[3], n[3], 2, 1),
            (c[4], n[4], 1, 2),
            (c[5], n[5], 1, 4),
        ):
            stages.append(_bottleneck_stage(cin, planes, blocks, stride, dil))
            cin = planes * Bottleneck.expansion
        stages.append(_plain_stage(cin, c[6], n[6], dilation=2))
        stages.append(_plain_stage(c[6], c[7], n[7], dilation=1))
        self.base = nn.Sequential(*stages)
        self.seg = nn.Conv2d(c[7], classes, 1)
        self.up = nn.ConvTranspose2d(classes, classes, 16, stride=8, padding=4, groups=classes, bias=False)
        with torch.no_grad():
            self.up.weight.copy_(bilinear_upsampling_weight(classes))
        self.up.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.seg(self.base(x)))


def load_drn(path: str | os.PathLike, device: str = "cpu") -> DRNSeg:
    """DRN-D-105 with the released Cityscapes weights (``module.`` prefixes are stripped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DRN weights {path} do not exist")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    with torch.device("meta"):  # no random initialisation of 40M parameters that are overwritten anyway
        model = DRNSeg()
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{path} is not a DRN-D-105 segmentation state dict (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    for m in model.modules():  # checkpoints without num_batches_tracked
        if isinstance(m, nn.BatchNorm2d) and m.num_batches_tracked.is_meta:
            m.num_batches_tracked = torch.zeros((), dtype=torch.long)
    return model.to(device).eval()


def normalize(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` or ``[B, H, W, 3]`` -> normalised float ``[B, 3, H, W]``."""
    t = torch.from_numpy(np.array(images, copy=True))
    if t.dtype != torch.uint8 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB images [..., H, W, 3], got {t.dtype} {tuple(t.shape)}")
    t = t.reshape(-1, *t.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0
    return (t - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


@torch.no_grad()
def predict(model: DRNSeg, images: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Train-id predictions ``[B, H, W]`` of uint8 RGB images (H, W multiples of 8)."""
    x = normalize(images).to(device)
    if x.shape[-2] % 8 or x.shape[-1] % 8:
        raise ValueError(f"DRN needs image sides that are multiples of 8, got {tuple(x.shape[-2:])}")
    return model(x).argmax(dim=1).cpu().numpy()


def confusion(pred: np.ndarray, label: np.ndarray, n: int = NUM_CLASSES, mask: np.ndarray | None = None) -> np.ndarray:
    """``n x n`` histogram (rows: ground truth train id, columns: prediction); labels outside 0..n-1 ignored."""
    pred, label = np.asarray(pred).ravel().astype(np.int64), np.asarray(label).ravel().astype(np.int64)
    if pred.shape != label.shape:
        raise ValueError(f"prediction and label sizes differ: {pred.size} vs {label.size}")
    keep = (label >= 0) & (label < n)
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool).ravel()
    return np.bincount(n * label[keep] + pred[keep], minlength=n * n).reshape(n, n)


def miou(hist: np.ndarray) -> tuple[float, np.ndarray]:
    """(mIoU x 100 over classes present in prediction or label, per-class IoU x 100 with NaN for absent)."""
    hist = np.asarray(hist, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.diag(hist) / (hist.sum(0) + hist.sum(1) - np.diag(hist))
    return float(np.nanmean(iou) * 100) if np.isfinite(iou).any() else float("nan"), iou * 100
