"""The ``*_diffusers`` models in the harness: measured exactly as the project's own models (tiny configurations through
scripts/run.py's Hydra configs), a model config that disagrees with its diffusers config, the job list, and
``weights=<diffusers folder>`` for the efficiency and generate tasks."""

import json

import pytest
import torch

from sdxl.diffusers_arch import DiffusersConfigError

from . import diffusers_tiny as tiny
from .test_efficiency import TINY
from .tiny import model_cfg

pytest.importorskip("diffusers")

# the diffusers configs of test_efficiency's tiny sd14 (32 / 64 channels, transformers at both levels, 4 heads)
TINY_SD14 = ["model.unet.num_heads=4", "model.unet.transformer_depth=[1,1]"]
TINY_UNET = dict(
    _class_name="UNet2DConditionModel", block_out_channels=[32, 64], layers_per_block=2, cross_attention_dim=16,
    attention_head_dim=4, down_block_types=["CrossAttnDownBlock2D"] * 2, up_block_types=["CrossAttnUpBlock2D"] * 2,
)  # fmt: skip
TINY_VAE = dict(_class_name="AutoencoderKL", block_out_channels=[32] * 4, layers_per_block=2,
                down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_configs(tmp_path_factory):
    d = tmp_path_factory.mktemp("diffusers_configs")
    (d / "unet.json").write_text(json.dumps(TINY_UNET))
    (d / "vae.json").write_text(json.dumps(TINY_VAE))
    return [f"model.diffusers.unet={d / 'unet.json'}", f"model.diffusers.vae={d / 'vae.json'}"]


@pytest.mark.parametrize("component", ["unet", "decoder"])
def test_diffusers_model_is_measured_as_the_projects_own(tmp_path, capsys, tiny_configs, component):
    from sigebench.jobs import compose_job
    from sigebench.tasks import efficiency

    rows = {}
    for model in ("sd14", "sd14_diffusers"):
        over = [f"model={model}", f"component={component}", "edit=sd_sdedit0", f"output={tmp_path}/e.csv", *TINY,
                *TINY_SD14, *(tiny_configs if model.endswith("diffusers") else [])]  # fmt: skip
        rows[model] = efficiency(compose_job(over))
    ours, theirs = rows["sd14"], rows["sd14_diffusers"]
    assert [r["variant"] for r in theirs] == ["original", "sige", "sige_fast"]
    for a, b in zip(ours, theirs):
        assert b["model"] == "sd14_diffusers" and b["weights"] == "random"
        assert (a["macs"], a["macs_with_fused_attention"], a["active_fraction"]) == (
            b["macs"], b["macs_with_fused_attention"], b["active_fraction"])  # fmt: skip
    assert theirs[1]["psnr_vs_dense_db"] > 10


def test_a_model_config_that_disagrees_with_its_diffusers_config_is_refused():
    from sdxl.family import build_component

    cfg = model_cfg("sd14_diffusers")
    cfg["unet"]["context_dim"] = 1024
    with pytest.raises(DiffusersConfigError, match="model.unet of sd14_diffusers and .*sd14_unet.*text context width"):
        build_component(cfg, "unet", None, torch.float32, "cpu")
    cfg = model_cfg("sd14_diffusers")
    cfg["diffusers"]["text_encoder"] = "x"
    with pytest.raises(ValueError, match="model.diffusers.text_encoder"):
        build_component(cfg, "unet", None, torch.float32, "cpu")


def test_the_diffusers_job_list_composes_with_known_model_keys():
    from sdxl.family import MODEL_KEYS
    from sigebench.config import check_keys, plain, validate
    from sigebench.jobs import compose_job, load_jobs

    jobs = load_jobs("reproduce", ["diffusers"])
    assert len(jobs) == 7 and all(j.get("published") for j in jobs)
    for job in jobs:
        cfg = plain(compose_job(job["overrides"]))
        validate(cfg)
        check_keys(cfg["model"], MODEL_KEYS, "model.")
        assert cfg["model"]["name"].endswith("_diffusers") and cfg["model"]["diffusers"]["unet"]


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    """A tiny SD pipeline folder (save_pretrained) with a tiny CLIP text encoder and a local tokenizer."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    d = tmp_path_factory.mktemp("sd_folder")
    vocab = {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
    vocab.update({c + "</w>": 26 + i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")})
    vocab.update({"<|startoftext|>": 52, "<|endoftext|>": 53})
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=77)
    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=54, hidden_size=16, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, bos_token_id=52, eos_token_id=53, pad_token_id=53)  # fmt: skip
    text = CLIPTextModel(cfg)
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = tiny.randomize(UNet2DConditionModel.from_config({k: v for k, v in TINY_UNET.items() if k[0] != "_"}))
    vae = tiny.randomize(AutoencoderKL.from_config({k: v for k, v in TINY_VAE.items() if k[0] != "_"}), 1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text.eval(), tokenizer=tok, unet=unet,
                                   scheduler=tiny.scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)  # fmt: skip
    pipe.save_pretrained(str(d / "pipe"))
    return d / "pipe", unet, vae


@pytest.mark.parametrize("model", ["sd14", "sd14_diffusers"])
def test_weights_folder_loads_for_own_and_diffusers_models(sd_folder, tiny_configs, model):
    from sdxl.family import build_component
    from sigebench.config import plain
    from sigebench.jobs import compose_job

    folder, unet, vae = sd_folder
    over = [f"model={model}", *TINY, *TINY_SD14, *(tiny_configs if model.endswith("diffusers") else [])]
    cfg = plain(compose_job(over))["model"]
    m, label = build_component(cfg, "unet", str(folder), torch.float32, "cpu")
    assert label == str(folder)
    torch.testing.assert_close(m.input_blocks[0][0].weight, unet.conv_in.weight, atol=0, rtol=0)
    d, _ = build_component(cfg, "decoder", str(folder / "vae"), torch.float32, "cpu")
    torch.testing.assert_close(d.conv_out.weight, vae.decoder.conv_out.weight, atol=0, rtol=0)


def test_generate_with_a_diffusers_folder(sd_folder, tmp_path):
    """task=generate with weights=<folder>: the folder's tokenizer and text encoder, no model.text.tokenizer."""
    from sdxl.family import generate
    from sigebench.config import plain
    from sigebench.jobs import compose_job

    folder, _, _ = sd_folder
    over = ["task=generate", "model=sd14", "edit=synthetic", "edit.area=0.1", f"weights={folder}", *TINY, *TINY_SD14,
            "model.sampler.sample_steps=2", "task.prompt='a red door'", f"task.out_dir={tmp_path}"]  # fmt: skip
    rows = generate(plain(compose_job(over)))
    assert [r["variant"] for r in rows] == ["original", "sige"]
    from PIL import Image

    a, b = (Image.open(r["image"]) for r in rows)
    assert a.size == b.size == (64, 32)
