"""The example edits' mask pipelines and the efficiency task end to end (a tiny model through scripts/run.py's
Hydra configs)."""

import json

import numpy as np
import pytest
import torch

from sdxl.edits import load_case
from sdxl.family import component_inputs
from sigebench.results import ResultsStore
from sigebench.variants import output_psnr as psnr

from .tiny import edit_cfg, model_cfg


@pytest.fixture(scope="module")
def cases():
    return {n: load_case(edit_cfg(n)) for n in ("sd_sdedit0", "sd_sdedit1", "sd_inpainting")}


def test_edit_fractions_and_pyramids_follow_the_reference(cases):
    """Pixel edit ratios (eps 0.02, before dilation) and the inpainting pyramid densities of sige-reference 4.4."""
    assert round(cases["sd_sdedit0"].edited_fraction * 100, 2) == 1.72
    assert round(cases["sd_sdedit1"].edited_fraction * 100, 2) == 2.78
    inp = cases["sd_inpainting"]
    assert inp.edited_fraction == 60800 / (512 * 1024)
    density = {k: round(float(v.float().mean()) * 100, 1) for k, v in inp.masks.items()}
    assert density == {(512, 1024): 11.8, (256, 512): 12.0, (128, 256): 12.6, (64, 128): 13.3, (32, 64): 15.9,
                       (16, 32): 19.5, (8, 16): 25.0, (4, 8): 37.5}  # fmt: skip
    for case in (cases["sd_sdedit0"], cases["sd_sdedit1"]):
        assert (2, 4) in case.masks  # min_res (4, 4): stops once both sides are below 4
        full = (512, 1024)  # the decoder's mask (40 px more) contains the UNet/encoder one
        assert bool((case.decoder_masks[full] | ~case.masks[full]).all())
        assert case.decoder_masks[(512, 1024)].float().mean() > 2 * case.masks[(512, 1024)].float().mean()
    assert bool((inp.edited[:, :, inp.region] == -1).all())  # the encoder's inpainting edit: the box blacked out


def test_component_inputs_differ_only_in_the_edited_latent_region(cases):
    case = cases["sd_sdedit0"]
    cfg = model_cfg("sdxl_base")
    o, e, masks = component_inputs("unet", case, cfg, torch.float32, "cpu", seed=1)
    assert o[0].shape == (2, 4, 64, 128) and o[2].shape == (2, 77, 2048) and o[3].shape == (2, 2816)
    changed = (o[0] != e[0]).any(dim=(0, 1))
    assert changed.any() and not changed[~masks[(64, 128)]].any()
    assert torch.equal(o[0][0], o[0][1])  # the CFG pair shares its latent
    _, _, dmasks = component_inputs("decoder", case, cfg, torch.float32, "cpu")
    assert dmasks == case.decoder_masks  # full size: the pyramid reaches the latent already
    assert psnr(o[0], o[0]) == float("inf") and psnr(e[0], o[0]) < 100


TINY = [
    "model.image_size=[32,64]", "model.unet.model_channels=32", "model.unet.channel_mult=[1,2]",
    "model.unet.context_dim=16", "model.context_tokens=5", "model.vae.ch=32", "model.vae.ch_mult=[1,1,1,1]",
    "timing.enabled=false", "threads=1",
]  # fmt: skip


@pytest.mark.parametrize(
    "model, component, edit",
    [
        ("sd14", "encoder", "synthetic"),
        ("sdxl_base", "unet", "sd_sdedit0"),
        ("sdxl_refiner", "decoder", "sd_inpainting"),
    ],
)
def test_efficiency_task_end_to_end(tmp_path, capsys, model, component, edit):
    from sigebench.jobs import compose_job
    from sigebench.tasks import efficiency

    over = [f"model={model}", f"component={component}", f"edit={edit}", f"output={tmp_path}/e.csv", "force=true", *TINY]
    if model == "sd14":
        over += ["model.unet.num_heads=4", "model.unet.transformer_depth=[1,1]"]
    else:
        over += [
            "model.unet.num_head_channels=8",
            "model.unet.adm_in_channels=12",
            "model.unet.transformer_depth=[1,2]",
        ]
    if edit == "synthetic":
        over.append("edit.area=0.05")
    rows = efficiency(compose_job(over))
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["variant"] for r in rows] == [r["variant"] for r in printed] == ["original", "sige", "sige_fast"]
    dense, sige, fast = rows
    assert dense["macs"] > 0 and sige["macs"] >= fast["macs"] > 0  # (tiny maps: halos can outweigh the savings)
    assert 0 < sige["active_fraction"] < 1 and sige["psnr_vs_dense_db"] > 10 and dense["psnr_vs_dense_db"] is None
    for r in rows:
        assert r["model"] == model and r["component"] == component and r["weights"] == "random"
        if model == "sd14" or component == "decoder" and r["variant"] == "original":
            assert r["macs_with_fused_attention"] >= r["macs"]
    if model == "sdxl_base":  # self-attention is a fused call: counted only in the true count
        assert all(r["macs_with_fused_attention"] > r["macs"] for r in rows)
    if model == "sd14":
        assert all(r["macs_with_fused_attention"] == r["macs"] for r in rows)
    assert len(ResultsStore(tmp_path / "e.csv").rows()) == 3


def test_efficiency_rejects_unknown_components_and_edits():
    from sdxl.family import build_component
    from sigebench.edits import EditError

    with pytest.raises(ValueError, match="unknown component"):
        build_component(model_cfg("sd14"), "text", None, torch.float32, "cpu")
    with pytest.raises(EditError, match="SD / SDXL models take RGB images"):
        load_case({"name": "labels", "kind": "custom", **_label_files()})


def _label_files():
    import tempfile

    d = tempfile.mkdtemp()
    np.save(f"{d}/o.npy", np.zeros((8, 8), np.int64))
    return {"original": f"{d}/o.npy", "edited": f"{d}/o.npy"}


def test_panel_of_an_example_edit_shows_the_decoder_dense_vs_sparse():
    """`make figures` panels for the SD examples: image-sized outputs, the edit region and the active tiles."""
    from sigebench.figures import panel

    p = panel(["model=sd14", "edit=sd_sdedit0", "component=decoder", "model.image_size=[64,128]", "model.vae.ch=8",
               "model.vae.ch_mult=[1,2,2,2]", "model.vae.num_res_blocks=1", "+model.vae.num_groups=4"])  # fmt: skip
    assert "random weights" in p["title"]
    assert p["dense"].shape == p["sparse"].shape == p["original"].shape == (3, 64, 128)
    blocks = p["blocks"]
    assert blocks.shape == (64, 128) and 0 < blocks.mean() < 0.5
    assert p["mask"].any() and not (p["mask"] & ~blocks).any()  # every edited pixel is recomputed
    assert np.isfinite(p["sparse"]).all() and not np.array_equal(p["sparse"], p["dense"])
