"""GauGAN (SPADE) and GAN Compression on Cityscapes edits with SIGE sparse inference (see gaugan/README.md).

Modules: ``models`` (the generators), ``checkpoints`` (released key layouts), ``inputs`` (semantics, edit
masks), ``labels`` (Cityscapes ids, train ids, colours), ``data`` (the edit set), ``tasks`` (efficiency,
generate), ``quality`` and ``drn`` (mIoU with DRN-D-105, FID / PSNR / LPIPS via sige.metrics).
"""
