"""The engine's ops as PyTorch custom operators: schemas and fake implementations (opcheck), a compiled
sparse model equal to the eager one without graph breaks at the ops, and an exported sparse conv."""

from __future__ import annotations

import pytest
import torch
from helpers import random_mask, sparse_conv_case
from torch import nn

from sige import ops
from sige.mask import dilate_mask, reduce_mask
from sige.ops import library

G = torch.Generator().manual_seed(0)
X = torch.randn(2, 3, 12, 14, generator=G)
IDX = reduce_mask(random_mask((12, 14), "random", G), 6, 4, 1)
TILES = torch.randn(2 * IDX.shape[0], 3, 4, 4, generator=G)
SMAP = ops.get_scatter_map(12, 14, (6, 6), (3, 3), (1, 1), (1, 1), IDX)
SCALE, SHIFT = torch.rand(1, 3, 1, 1, generator=G), torch.randn(2, 3, 12, 14, generator=G)
CASES = {
    "gather": (library.gather, (X, 6, 6, IDX, SCALE, SHIFT, "swish", False)),
    "scatter_": (library.scatter_, (X.clone(), TILES, IDX, 1, 1, 1, 1, SHIFT)),
    "copy_tiles_": (library.copy_tiles_, (X.clone(), SHIFT, IDX, 4, 4, 1, 1, 1, 1)),
    "block_residual_": (library.block_residual_, (X.clone(), TILES, IDX, 1, 1, 1, 1, SHIFT)),
    "get_scatter_map": (library.get_scatter_map, (12, 14, 6, 6, 3, 3, 1, 1, 1, 1, IDX)),
    "scatter_gather": (library.scatter_gather, (TILES, X, 6, 6, IDX, SMAP, SCALE, None, "gelu", True)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_opcheck(name):
    op, args = CASES[name]
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_custom_ops_give_the_eager_results():
    want = ops.gather(X, (6, 6), IDX, SCALE, SHIFT, "swish")
    assert torch.equal(torch.ops.sige.gather(X, 6, 6, IDX, SCALE, SHIFT, "swish", False), want)
    out = X.clone()
    torch.ops.sige.scatter_(out, TILES, IDX, 1, 1, 1, 1, None)
    assert torch.equal(out, ops.scatter(X, TILES, IDX, (1, 1), (1, 1)))


def test_compiled_sparse_model_matches_eager_without_breaking_at_the_ops():
    torch._dynamo.reset()
    model, x1, _ = sparse_conv_case(4, 6, 24, seed=1)
    with torch.no_grad():
        want = model(x1)
        explanation = torch._dynamo.explain(model)(x1)
        got = torch.compile(model)(x1)
    assert torch.equal(got, want)
    reasons = " ".join(str(b.reason) for b in explanation.break_reasons)
    assert "sige" not in reasons and "pybind" not in reasons, reasons


def test_a_sparse_resblock_unet_compiles_into_one_graph():
    """The engine's ResBlocks, down/upsampling and frozen norms in sparse mode: one graph, no breaks,
    the eager result up to the compiler's reassociation of elementwise math."""
    from test_blocks import Tiny

    from sige.mask import downsample_mask

    torch._dynamo.reset()
    model = Tiny().eval()
    g = torch.Generator().manual_seed(1)
    x0, t = torch.randn(1, 8, 32, 32, generator=g), torch.randn(1, 4, generator=g)
    m = random_mask((32, 32), "pixel", g)
    x1 = x0 + torch.randn(1, 8, 32, 32, generator=g) * m
    with torch.no_grad():
        model(x0, t)
        model.set_masks(downsample_mask(dilate_mask(m, 12), min_res=4, dilation=4))
        model.set_mode("sparse")
        want = model(x1, t)
        explanation = torch._dynamo.explain(model)(x1, t)
        got = torch.compile(model)(x1, t)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0, explanation.break_reasons
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


class SparseConv(nn.Module):
    """gather -> conv -> scatter written with the functional ops (what an exported sparse layer holds)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3)

    def forward(self, x, base, indices):
        blocks = ops.gather(x, (6, 6), indices, None, None, "relu")
        return ops.scatter(base, self.conv(blocks), indices, (0, 0), (1, 1))


def test_export_sees_the_ops():
    torch._dynamo.reset()
    m = SparseConv().eval()
    x, base = torch.randn(1, 3, 12, 12), torch.randn(1, 5, 10, 10)
    idx = torch.tensor([[0, 0], [4, 4]], dtype=torch.int32)
    exported = torch.export.export(m, (x, base, idx))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert {"sige.gather.default", "sige.scatter_.default"} <= targets, targets
    assert torch.equal(exported.module()(x, base, idx), m(x, base, idx))
