"""How a sparse conv computes its batch of gathered blocks, chosen per layer by measuring.

* ``conv``: one ``F.conv2d`` over the block batch (oneDNN / cuDNN; the original engine's way);
* ``gemm``: the im2col rows of every output pixel of every block stacked into one matrix, one matrix
  multiply with the weight (the same MACs; no per-block overhead in the conv library, which for a few
  blocks with many channels runs far below its dense speed).

``auto`` times both (in alternation) on the layer's real input the first time a shape is seen and keeps
``gemm`` when it is at least 10 % faster, else ``conv``, for that shape, dtype, device and thread count
(:data:`CHOICES`, in memory; :func:`save_choices` / :func:`load_choices` keep them across processes, keyed
by machine too). The two differ only in float
rounding order. Profile mode always runs ``conv`` (MACs are counted on it).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ALGORITHMS = ("conv", "gemm", "auto")
# (algorithm-independent layer key) -> chosen algorithm
CHOICES: dict[str, str] = {}


def conv(layer: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, layer.weight, layer.bias, layer.stride, 0, layer.dilation, layer.groups)


def gemm(layer: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The conv as one matrix multiply over the im2col rows of all blocks (valid padding, groups 1)."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
    oh, ow = (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1
    co = layer.out_channels
    if (kh, kw) == (1, 1):
        xs = x[:, :, ::sh, ::sw] if (sh, sw) != (1, 1) else x
        rows = xs.permute(0, 2, 3, 1).reshape(N * oh * ow, C)
    else:
        rows = F.unfold(x, (kh, kw), (dh, dw), 0, (sh, sw)).transpose(1, 2).reshape(N * oh * ow, C * kh * kw)
    weight = layer.weight.reshape(co, -1).t()  # a view: BLAS takes the transposed operand as it is
    out = rows @ weight if layer.bias is None else torch.addmm(layer.bias, rows, weight)
    return out.view(N, oh, ow, co).permute(0, 3, 1, 2).contiguous()  # the layout scatters read


RUN: dict[str, Callable[[torch.nn.Conv2d, torch.Tensor], torch.Tensor]] = {"conv": conv, "gemm": gemm}


def _bucket(n: int) -> int:
    """Block counts within a factor of ~1.4 of each other share a choice (powers of sqrt 2)."""
    return 0 if n <= 0 else round(2 * math.log2(n))


def layer_key(layer: torch.nn.Conv2d, x: torch.Tensor) -> str:
    n, c, h, w = x.shape
    return json.dumps([
        x.device.type, str(x.dtype).removeprefix("torch."), torch.get_num_threads(), _bucket(n), c, h, w,
        layer.out_channels, list(layer.kernel_size), list(layer.stride), list(layer.dilation), layer.groups,
    ])  # fmt: skip


def candidates(layer: torch.nn.Conv2d) -> tuple[str, ...]:
    return ("conv", "gemm") if layer.groups == 1 else ("conv",)


# Another algorithm replaces ``conv`` (the original engine's) only when it measures this much faster: a layer
# timed alone on a shared machine can mislead by a few percent, and a wrong switch must not cost more than that.
MARGIN = 0.9


def _time(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int = 5) -> dict[str, float]:
    """Median seconds of each function, timed in alternation (a drifting machine weighs on all alike)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up: library plans, page faults of the output
    sync()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def choose(layer: torch.nn.Conv2d, x: torch.Tensor) -> str:
    """The faster algorithm for ``layer`` on inputs like ``x`` (measured once per key, then remembered);
    ``conv`` unless another is faster by :data:`MARGIN`."""
    key = layer_key(layer, x)
    best = CHOICES.get(key)
    if best is None:
        options = candidates(layer)
        if len(options) == 1 or x.shape[0] == 0:
            best = options[0]
        else:
            with torch.no_grad():
                timed = _time({name: (lambda name=name: RUN[name](layer, x)) for name in options}, x.device)
            fastest = min(timed, key=timed.get)
            best = fastest if timed[fastest] < MARGIN * timed["conv"] else "conv"
        CHOICES[key] = best
    return best


def run(layer: torch.nn.Conv2d, x: torch.Tensor, algorithm: str) -> torch.Tensor:
    if algorithm == "auto":
        # the layer remembers its last input's signature and choice: building the JSON key on every call costs
        # tens of microseconds, as much as a small sparse conv
        sig = (x.shape, x.dtype, x.device, torch.get_num_threads())
        memo = getattr(layer, "_sige_algorithm_memo", None)
        if memo is not None and memo[0] == sig and CHOICES.get(memo[2]) == memo[1]:
            algorithm = memo[1]
        else:
            algorithm = choose(layer, x)
            layer._sige_algorithm_memo = (sig, algorithm, layer_key(layer, x))
    return RUN[algorithm](layer, x)


def set_conv_algorithm(model: torch.nn.Module, algorithm: str) -> None:
    """Set how every SIGEConv2d of ``model`` computes its blocks in sparse mode (``conv``, ``gemm`` or ``auto``)."""
    from sige.nn.base import SIGEConv2d

    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown conv algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    for m in model.modules():
        if isinstance(m, SIGEConv2d):
            if algorithm == "gemm" and m.groups != 1:
                continue  # grouped convs have no single matrix: they keep the conv
            m.algorithm = algorithm


def _machine() -> str:
    return f"{platform.machine()}-{platform.processor() or platform.node()}"


def save_choices(path: str | os.PathLike[str]) -> None:
    """Write the measured choices (with this machine's name) to a JSON file, atomically."""
    p = Path(path)
    data = {"machine": _machine(), "choices": CHOICES}
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=0, sort_keys=True))
    os.replace(tmp, p)


def load_choices(path: str | os.PathLike[str]) -> int:
    """Add the choices of a file written on this machine (a file from another machine is ignored, since its
    timings do not transfer); returns how many were loaded."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return 0
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read conv tuning choices from {path}: {e}") from e
    if data.get("machine") != _machine():
        return 0
    CHOICES.update({k: v for k, v in data.get("choices", {}).items() if v in RUN})
    return len(data.get("choices", {}))
