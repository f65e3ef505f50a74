"""The diffusers-built SD 1.4 and SDXL UNets count the same MACs as the project's own sd14 / sdxl_* models: their
configs translate to the same architecture (tested in test_diffusers_convert), and the hand derivation, which
test_macs proves equal to the models' torchprofile counts, gives the same figures at full size on the paper's edits."""

import pytest

from sdxl.config import unet_config
from sdxl.diffusers_arch import read_config, unet_config_from_diffusers, with_engine
from sdxl.edits import load_case

from .derived_macs import unet_macs
from .tiny import edit_cfg, model_cfg

# model -> (edit, dense G, sparse G) in the paper's counting convention, as sdxl/README.md lists them
FIGURES = {
    "sd14": ("sd_sdedit0", 1854.82, 224.89),
    "sdxl_base": ("sd_sdedit0", 3015.81, 592.03),
    "sdxl_refiner": ("sd_sdedit1", 3058.80, 777.37),
    "sdxl_turbo": ("sd_inpainting", 3015.81, 974.42),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_diffusers_built_unet_counts_the_projects_macs(name):
    edit, dense_g, sparse_g = FIGURES[name]
    mc = model_cfg(f"{name}_diffusers")
    theirs = with_engine(unet_config_from_diffusers(read_config(mc["diffusers"]["unet"])), mc["unet"])
    ours = unet_config(model_cfg(name)["unet"])
    masks = load_case(edit_cfg(edit)).masks
    for cfg in (theirs, ours):
        dense, sparse = unet_macs(cfg, 2, 64, 128, 77), unet_macs(cfg, 2, 64, 128, 77, masks)
        assert (round(dense.paper / 1e9, 2), round(sparse.paper / 1e9, 2)) == (dense_g, sparse_g)
