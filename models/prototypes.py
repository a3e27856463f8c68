"""Prototypical modality rebalancing: class prototypes, the prototype classifier, imbalance factors.

The pieces of PRSANet's *prototypical rebalancing module* (spec ``prsanet.md`` section 5.4) as
small, separately testable functions plus one stateful :class:`PrototypeBank`. The formulas are
**gap-filled** from PMR (Fan et al., CVPR 2023; spec section 4.1), because the PRSANet paper text is
not public; the abstract only fixes their roles:

* prototype of class k for embedding set m: the mean embedding of the class, EMA-smoothed
  ``c_new = (1 - mu) * c_mean + mu * c_old`` and never back-propagated through;
* non-parametric prototype classifier: ``logits_k = -||z - c_k||_2 / tau``;
* learning-speed score of a modality: ``s = mean_i p(y_i | x_i)`` under that classifier;
* imbalance factor ``kappa_m = s_m / max_m' s_m'`` in (0, 1] (1 = the fastest, dominant modality);
* loss weight of the intermodal independent prototype loss: ``alpha * clip(1/kappa - 1, 0, 1)``
  (continuous, BalanceBenchmark's reading of PMR) or ``alpha * [kappa < 1]`` (binary, the official
  PMR code's switch). Either way the dominant modality gets weight 0.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import NetworkError

WeightMode = Literal["continuous", "binary"]
UpdateMode = Literal["epoch", "batch"]

#: Logit given to classes whose prototype does not exist yet: exp() underflows to exactly 0 but,
#: unlike -inf, ``0 * log_softmax`` stays 0 (no NaN in the entropy).
MASKED_LOGIT: float = -1e9


def class_means(z: Tensor, y: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class sums (K, D) and counts (K,) of embeddings ``z`` (N, D) with labels ``y`` in 0..K-1.

    Sums, not means, so that batches can be accumulated exactly; divide by ``counts`` (> 0) to get
    the means.
    """
    sums = z.new_zeros(num_classes, z.shape[1]).index_add_(0, y, z)
    counts = torch.bincount(y, minlength=num_classes).to(z.dtype)
    return sums, counts


def prototype_logits(z: Tensor, prototypes: Tensor, ready: Tensor | None = None,
                     temperature: float = 1.0) -> Tensor:
    """Logits of the non-parametric prototype classifier: ``-||z_i - c_k||_2 / tau`` (N, K).

    Computed in float32 whatever the autocast dtype (distances of 128-d embeddings lose too much in
    float16). Classes whose prototype is not ``ready`` get :data:`MASKED_LOGIT` (probability 0).
    """
    diff = z.float().unsqueeze(1) - prototypes.float().unsqueeze(0)
    logits = -diff.pow(2).sum(-1).clamp_min(1e-12).sqrt() / temperature
    if ready is not None:
        logits = logits.masked_fill(~ready.unsqueeze(0), MASKED_LOGIT)
    return logits


def true_class_probability(logits: Tensor, y: Tensor) -> Tensor:
    """``p(y_i | x_i)`` (N,) under ``softmax(logits)``: the per-sample term of the speed score."""
    return logits.softmax(dim=1).gather(1, y.unsqueeze(1)).squeeze(1)


def imbalance_factors(scores: Tensor) -> Tensor:
    """``kappa_m = s_m / max_m' s_m'`` (spec 5.4); all ones when every score is 0 (nothing learnt)."""
    top = scores.max()
    if top <= 0:
        return torch.ones_like(scores)
    return scores / top


def rebalance_weights(kappa: Tensor, alpha: float = 1.0, mode: WeightMode = "continuous") -> Tensor:
    """Weight of each modality's prototype loss from its imbalance factor (spec 5.4).

    ``continuous``: ``alpha * clip(1/kappa - 1, 0, 1)``, grows with how far a modality lags.
    ``binary``: ``alpha`` for every modality slower than the fastest (``kappa < 1``), as the
    official PMR code switches its boost on for the weaker modality. The fastest gets 0 in both.
    """
    if mode == "continuous":
        return alpha * (1.0 / kappa - 1.0).clamp(0.0, 1.0)
    if mode == "binary":
        return alpha * (kappa < 1.0).to(kappa.dtype)
    raise NetworkError(f"unknown rebalancing weight mode {mode!r}; use 'continuous' or 'binary'")


def prototype_entropy(logits: Tensor) -> Tensor:
    """Mean entropy ``H(softmax(logits))`` over the rows: PMR's prototypical entropy regulariser."""
    logp = logits.log_softmax(dim=1)
    return -(logp.exp() * logp).sum(dim=1).mean()


class PrototypeBank(nn.Module):
    """Detached class prototypes of several embedding sets (one per modality, plus the fused one).

    ``prototypes`` (S, K, D) and ``ready`` (S, K) are persistent buffers, so a saved model resumes
    training with its prototypes. Two update schedules (a switch, spec 5.4 vs. a design choice):

    * ``"epoch"`` (default, PMR): the embeddings seen by the training steps of an epoch are summed
      per class and :meth:`end_epoch` blends their mean into the prototypes once, momentum 0.2.
      PMR recomputes the means in a separate eval pass at the start of each epoch; here they come
      from the epoch's own training steps, because the generic training loop has no such pass.
    * ``"batch"``: every :meth:`observe` blends the batch means in at once (momentum ~0.9), for
      loops that never call :meth:`end_epoch`.

    A class's prototype is created (``bootstrap``) from the first batch that contains it; a class
    absent from an update keeps its previous prototype (spec 5.4's fallback for tiny classes).
    """

    prototypes: Tensor
    ready: Tensor

    def __init__(self, num_sets: int, num_classes: int, dim: int, momentum: float = 0.2,
                 update: UpdateMode = "epoch") -> None:
        super().__init__()
        if update not in ("epoch", "batch"):
            raise NetworkError(f"unknown prototype update {update!r}; use 'epoch' or 'batch'")
        if not 0.0 <= momentum < 1.0:
            raise NetworkError(f"prototype momentum must be in [0, 1), got {momentum}")
        self.num_sets, self.num_classes, self.dim = num_sets, num_classes, dim
        self.momentum, self.update = momentum, update
        self.register_buffer("prototypes", torch.zeros(num_sets, num_classes, dim))
        self.register_buffer("ready", torch.zeros(num_sets, num_classes, dtype=torch.bool))
        # Epoch sums are plain attributes, not buffers: DistributedDataParallel broadcasts buffers
        # from rank 0 before every forward, which would overwrite each rank's own accumulation.
        self._sums: Tensor | None = None
        self._counts: Tensor | None = None

    def _accumulators(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if self._sums is None or self._counts is None or self._sums.device != device:
            self._sums = torch.zeros(self.num_sets, self.num_classes, self.dim, device=device)
            self._counts = torch.zeros(self.num_sets, self.num_classes, device=device)
        return self._sums, self._counts

    @property
    def pending(self) -> int:
        """Number of samples accumulated since the last :meth:`end_epoch` (summed over the sets)."""
        return 0 if self._counts is None else int(self._counts.sum())

    def snapshot(self) -> tuple[Tensor, Tensor]:
        """Copies of (prototypes, ready): later in-place updates must not touch the autograd graph."""
        return self.prototypes.clone(), self.ready.clone()

    @torch.no_grad()
    def bootstrap(self, embeddings: Sequence[Tensor], y: Tensor) -> None:
        """Create the prototypes of classes present in ``y`` that have none yet (batch means)."""
        for s, z in enumerate(embeddings):
            sums, counts = class_means(z.detach().float(), y, self.num_classes)
            new = (counts > 0) & ~self.ready[s]
            if new.any():
                self.prototypes[s, new] = sums[new] / counts[new].unsqueeze(1)
                self.ready[s, new] = True

    @torch.no_grad()
    def observe(self, embeddings: Sequence[Tensor], y: Tensor) -> None:
        """Record a batch: accumulate it (``epoch``) or blend its class means in now (``batch``)."""
        for s, z in enumerate(embeddings):
            sums, counts = class_means(z.detach().float(), y, self.num_classes)
            if self.update == "batch":
                self._blend(s, sums, counts)
            else:
                acc_sums, acc_counts = self._accumulators(sums.device)
                acc_sums[s] += sums
                acc_counts[s] += counts

    @torch.no_grad()
    def end_epoch(self) -> None:
        """Blend the epoch's class means into the prototypes (``epoch`` mode) and reset the sums.

        Under ``torch.distributed`` the sums of all ranks are added first, so every rank keeps the
        same prototypes.
        """
        if self.update == "epoch":
            sums, counts = (t.clone() for t in self._accumulators(self.prototypes.device))
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(sums)
                torch.distributed.all_reduce(counts)
            for s in range(self.num_sets):
                self._blend(s, sums[s], counts[s])
        self._sums = self._counts = None

    def _blend(self, s: int, sums: Tensor, counts: Tensor) -> None:
        seen = counts > 0
        if not seen.any():
            return
        means = sums[seen] / counts[seen].unsqueeze(1)
        old = self.prototypes[s, seen]
        was_ready = self.ready[s, seen].unsqueeze(1)
        blended = torch.where(was_ready, (1.0 - self.momentum) * means + self.momentum * old, means)
        self.prototypes[s, seen] = blended
        self.ready[s, seen] = True


def masked_cross_entropy(logits: Tensor, y: Tensor, keep: Tensor) -> Tensor:
    """Mean cross-entropy over the rows where ``keep``; 0 (still in the graph) when none is kept."""
    if keep.any():
        return F.cross_entropy(logits[keep], y[keep])
    return logits.sum() * 0.0
