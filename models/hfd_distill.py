"""HFDM: heterogeneous (optical -> SAR) feature distillation of HFD-Net (torch only).

Known from the paper (arXiv:2210.08988, spec Sec. 2): a teacher pre-trained on optical (EO)
images transfers its latent features to a SAR student of the same architecture, supervising the
student's training; at test time only the student and SAR are used. The loss is not published;
this module implements the spec's recommended gap-filling (Sec. 5.2-5.3, after DisOptNet,
FitNets, SKD and CWD):

    L = L_seg(student) + feature_weight * sum_l L_feat(g_l(S_l), T_l) + kd_weight * L_kd

* ``g_l``: a student-side 1x1 conv + BN adapter per distilled level (absorbs the SAR/EO
  statistics gap); used in training only and dropped from :meth:`HFDDistiller.student_state_dict`.
* ``L_feat``: ``mse_norm`` (per-channel standardisation over H x W, then MSE, so its scale does
  not depend on the data set) or ``cwd`` (channel-wise distillation, Shu et al. ICCV 2021).
* ``L_kd``: pixel-wise KL(teacher || student) of the temperature-softened logits, x T^2.

The distiller fulfils the network contract (docs/contributing.md) with the inputs
``[optical, sar]``, so the generic training loop trains it like any two-input dense model.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import NetworkError
from .network import NetworkModule
from .registry import IGNORE_INDEX, optimizer_groups

FeatureLoss = Literal["mse_norm", "cwd"]
KDMask = Literal["all", "labelled", "teacher_correct"]

#: Spec Sec. 5.2: S = {P3, P4, P5, F} (the spec suggests {P5, F} as a lighter start; ablate).
DEFAULT_LEVELS: tuple[str, ...] = ("p3", "p4", "p5", "fused")


def channel_standardise(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per sample and channel over H x W (spec Sec. 5.2 ``norm``)."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


def normalised_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over (B, C, H, W) of (norm(student) - norm(teacher))^2."""
    return F.mse_loss(channel_standardise(student.float()), channel_standardise(teacher.float()))


def channel_wise_distillation(student: torch.Tensor, teacher: torch.Tensor, tau: float = 4.0) -> torch.Tensor:
    """CWD (Shu et al. 2021): per channel, softmax over positions; KL(teacher || student) * tau^2.

    Summed over positions, averaged over batch and channels.
    """
    b, c = teacher.shape[:2]
    log_s = F.log_softmax(student.float().reshape(b * c, -1) / tau, dim=1)
    log_t = F.log_softmax(teacher.float().reshape(b * c, -1) / tau, dim=1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=1)
    return kl.mean() * tau ** 2


def pixel_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float,
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel-wise KL(softmax(z_t / tau) || softmax(z_s / tau)) * tau^2, mean over (masked) pixels."""
    log_s = F.log_softmax(student_logits.float() / tau, dim=1)
    log_t = F.log_softmax(teacher_logits.float() / tau, dim=1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=1)  # (B, H, W)
    if mask is not None:
        if not bool(mask.any()):
            return student_logits.sum() * 0.0
        kl = kl[mask]
    return kl.mean() * tau ** 2


class HFDDistiller(NetworkModule):
    """Train a SAR student from a frozen optical teacher (HFDM, spec Sec. 5.2).

    Both networks must expose ``forward_features(x) -> (logits, {level: feature})`` and
    ``feature_channels`` (as :class:`~.hfdnet.HFDNet` does); the student's ``seg_loss`` is used
    when present (so its CE/Dice choice carries over), plain CE otherwise.

    Args:
        teacher: the optical network; frozen (no gradient) and kept in eval mode (BN statistics
            fixed) even when the distiller is put in train mode.
        student: the SAR network being trained.
        levels: feature levels distilled (default ``p3, p4, p5, fused``; spec Sec. 5.2).
        feature_loss: ``mse_norm`` (default) or ``cwd``.
        feature_weight: lambda_f (spec default 1.0).
        kd_weight: lambda_kd (spec default 1.0); 0 switches logit distillation off.
        temperature: tau of the logit KD (spec: 1-4; design choice 1.0, plain pixel-wise KL
            as in SKD).
        cwd_temperature: tau of CWD (spec: 4).
        kd_mask: pixels the logit KD applies to: ``all`` (default; the teacher also teaches
            where no label exists), ``labelled`` or ``teacher_correct`` (labelled pixels the
            teacher gets right; the spec's optional mask for SpaceNet6 layover).
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, levels: Sequence[str] = DEFAULT_LEVELS,
                 feature_loss: FeatureLoss = "mse_norm", feature_weight: float = 1.0, kd_weight: float = 1.0,
                 temperature: float = 1.0, cwd_temperature: float = 4.0, kd_mask: KDMask = "all") -> None:
        super().__init__()
        if feature_loss not in ("mse_norm", "cwd"):
            raise NetworkError(f"feature_loss must be 'mse_norm' or 'cwd', got {feature_loss!r}")
        if kd_mask not in ("all", "labelled", "teacher_correct"):
            raise NetworkError(f"kd_mask must be 'all', 'labelled' or 'teacher_correct', got {kd_mask!r}")
        if temperature <= 0 or cwd_temperature <= 0:
            raise NetworkError("distillation temperatures must be > 0")
        t_ch: dict[str, int] = dict(getattr(teacher, "feature_channels", {}))
        s_ch: dict[str, int] = dict(getattr(student, "feature_channels", {}))
        missing = [lv for lv in levels if lv not in t_ch or lv not in s_ch]
        if missing:
            raise NetworkError(f"feature level(s) {missing} not exposed by both networks; "
                             f"available: {sorted(set(t_ch) & set(s_ch))}")
        t_classes, s_classes = getattr(teacher, "num_classes", None), getattr(student, "num_classes", None)
        if t_classes is not None and s_classes is not None and t_classes != s_classes:
            raise NetworkError(f"teacher has {t_classes} classes but the student {s_classes}; "
                             "distil with the class table the teacher was trained on")
        self.teacher = teacher
        self.student = student
        self.levels = tuple(levels)
        self.feature_loss = feature_loss
        self.feature_weight = feature_weight
        self.kd_weight = kd_weight
        self.temperature = temperature
        self.cwd_temperature = cwd_temperature
        self.kd_mask = kd_mask
        self.adapters = nn.ModuleDict({
            lv: nn.Sequential(nn.Conv2d(s_ch[lv], t_ch[lv], 1, bias=False), nn.BatchNorm2d(t_ch[lv]))
            for lv in self.levels})
        self.teacher.requires_grad_(False)
        self.teacher.eval()

    def train(self, mode: bool = True) -> "HFDDistiller":
        """Train/eval the student and adapters; the teacher always stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, optical: torch.Tensor | None, sar: torch.Tensor) -> torch.Tensor:
        """The student's logits on ``sar`` (``optical`` is not needed for prediction)."""
        return self.student(sar)

    def _feature_term(self, s_feat: torch.Tensor, t_feat: torch.Tensor, level: str) -> torch.Tensor:
        adapted = self.adapters[level](s_feat)
        if adapted.shape[-2:] != t_feat.shape[-2:]:
            adapted = F.interpolate(adapted, size=t_feat.shape[-2:], mode="bilinear", align_corners=False)
        if self.feature_loss == "cwd":
            return channel_wise_distillation(adapted, t_feat, self.cwd_temperature)
        return normalised_mse(adapted, t_feat)

    def _kd_mask(self, teacher_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        if self.kd_mask == "all":
            return None
        labelled = target != IGNORE_INDEX
        if self.kd_mask == "labelled":
            return labelled
        return labelled & (teacher_logits.argmax(1) == target)

    def training_step(self, inputs: list[torch.Tensor], target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``inputs = [optical, sar]``; returns the total loss and its ``seg``/``feat``/``kd`` parts."""
        if len(inputs) != 2:
            raise NetworkError(f"distillation takes [optical, sar] inputs, got {len(inputs)} tensor(s)")
        optical, sar = inputs
        with torch.no_grad():
            t_logits, t_feats = self.teacher.forward_features(optical)
        s_logits, s_feats = self.student.forward_features(sar)
        if t_logits.shape[-2:] != s_logits.shape[-2:]:
            t_logits = F.interpolate(t_logits.float(), size=s_logits.shape[-2:], mode="bilinear", align_corners=False)
        if hasattr(self.student, "seg_loss"):
            seg, logs = self.student.seg_loss(s_logits, target)
        else:
            seg = F.cross_entropy(s_logits.float(), target, ignore_index=IGNORE_INDEX)
            logs = {"ce": float(seg.detach())}
        feat = s_logits.new_zeros((), dtype=torch.float32)
        for lv in self.levels:
            term = self._feature_term(s_feats[lv], t_feats[lv], lv)
            logs[f"feat_{lv}"] = float(term.detach())
            feat = feat + term
        kd = s_logits.new_zeros((), dtype=torch.float32)
        if self.kd_weight > 0:
            kd = pixel_kd(s_logits, t_logits, self.temperature, self._kd_mask(t_logits, target))
        total = seg + self.feature_weight * feat + self.kd_weight * kd
        logs.update(seg=float(seg.detach()), feat=float(feat.detach()), kd=float(kd.detach()),
                    loss=float(total.detach()))
        return total, logs

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """The student's groups (its own ``param_groups`` if any) plus the adapters; never the teacher."""
        groups = optimizer_groups(self.student, lr, weight_decay)
        groups.append({"params": list(self.adapters.parameters()), "lr": lr, "weight_decay": weight_decay})
        return groups

    def student_state_dict(self) -> dict[str, torch.Tensor]:
        """The student's weights alone (no adapter, no teacher): an ordinary SAR-only model."""
        return {k: v.detach().clone() for k, v in self.student.state_dict().items()}
