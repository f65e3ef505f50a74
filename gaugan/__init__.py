"""GauGAN (SPADE) and GAN Compression on Cityscapes edits with SIGE sparse inference (see gaugan/README.md).

Modules: ``models`` (the generators), ``checkpoints`` (released key layouts), ``inputs`` (semantics, edit
masks), ``labels`` (Cityscapes ids, train ids, colours), ``data`` (the edit set), ``family`` (the harness
interface: efficiency case, generate, quality images) and ``drn`` (mIoU with DRN-D-105).
"""
