"""Fitting networks: the training run shared by ``train`` and ``distill`` (resume, AMP, DDP,
early stopping) and the multi-process set-up under ``torchrun``."""
