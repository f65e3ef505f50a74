"""sigebench: the benchmark harness that reproduces the SIGE paper on the engine ``sige``.

Tasks (``efficiency``, ``generate``, ``quality``) behind ``scripts/run.py``, one family interface the model
packages implement (:mod:`sigebench.family`), measuring variants (:mod:`sigebench.variants`), provenance,
results storage that killed or concurrent jobs cannot corrupt (:mod:`sigebench.results`), the one edit loader
(:mod:`sigebench.edits`), samplers and schedules shared by every diffusion model, quality metrics, the data
layer (:mod:`sigebench.data`), ``results/TABLE.md`` and the figures. The engine never imports this package.
"""
