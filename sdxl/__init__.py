"""Stable Diffusion 1.4 and SDXL (base, refiner, turbo) with SIGE: sparse UNet, KL autoencoder and attention,
checkpoint loading, SDEdit / inpainting pipelines and the efficiency benchmark (see README.md)."""
