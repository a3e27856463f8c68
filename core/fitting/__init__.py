"""Fitting networks. One call of ``train`` or ``distill`` goes down this list once:

- ``training`` / ``distill``: the operations; they check their options and supply what differs
  (classes, modality cards, the network(s), provenance) to
- ``run``: one training run (claim outputs, prepare data, head kind's sampler and validation,
  loop, write model file + report), which builds with ``network`` and trains with
- ``loop``: the generic epoch loop, composed of ``step`` (AMP/DDP micro-steps, accumulation),
  ``schedule`` (optimiser, LR factor), ``early_stopping`` (best epoch, patience) and
  ``checkpoint`` (the resume file); the network is asked only through ``models.registry.Network``;
- ``ddp``: the process group under ``torchrun``.
"""
