"""HFD-Net: the shared teacher/student segmentation network of Gao & Dong (arXiv:2210.08988).

Known from the paper (spec Sec. 2): the optical teacher and the SAR student share one
architecture with different weights; a *heterogeneous feature alignment module* (HFAM)
aggregates multi-scale features inside each network by feature alignment; training uses paired
SAR + optical images, inference SAR only. Backbone, decoder and head are not published, so this
module implements the spec's recommended design (Sec. 5.1), gap-filled from SFNet (Li et al.,
ECCV 2020) and UPerNet/PSPNet:

* encoder: an in-house ResNet-18/34/50 (:mod:`.resnet`), C2..C5 at strides 4/8/16/32;
* context head on C5: pyramid pooling (default) or ASPP (switch ``context``) -> P5;
* HFAM decoder: for l = 4, 3, 2 a 1x1 lateral L_l, a flow field predicted from
  [up(P_{l+1}) || L_l] warps the coarser map before the sum P_l = L_l + warp(P_{l+1});
  then P3..P5 are flow-aligned onto the stride-4 grid, concatenated with P2 and fused (3x3 conv)
  into the feature F;
* head: dropout + 1x1 conv to K classes, bilinear to the input size.

The distillation itself (HFDM) lives in :mod:`.hfd_distill`; this network only exposes its
aligned features ``p2..p5`` and ``fused`` through :meth:`HFDNet.forward_features`.
The modality name does not matter to the network: a teacher is the same class built with the
optical band count.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .errors import NetworkError
from .layers import PPM, ConvBNReLU
from .network import NetworkModule
from .registry import IGNORE_INDEX, ModalitySpec, ModelSpec, Recipe, register
from .resnet import FirstConvInit, LoadReport, build_resnet, load_resnet_weights, resnet_names

ContextKind = Literal["ppm", "aspp"]
#: Names of the aligned feature levels :meth:`HFDNet.forward_features` returns.
FEATURE_LEVELS: tuple[str, ...] = ("p2", "p3", "p4", "p5", "fused")


def flow_warp(feature: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``feature`` on the grid of ``flow`` (B, 2, H, W), shifted by ``flow`` pixels.

    ``flow[:, 0]`` / ``flow[:, 1]`` are x / y offsets in pixels of the *output* grid. With a zero
    flow the sampling points are the output pixel centres mapped onto the input
    (``align_corners=False`` convention), so the warp equals bilinear resizing, and the identity
    when sizes match (SFNet, Sec. 3.2). Borders are clamped (``padding_mode="border"``).
    Half-precision inputs (CUDA autocast) are sampled in float32 and cast back; float64 inputs
    stay float64 (grid_sample's coordinate round-off is then far below 1e-6).
    """
    b, _, h, w = flow.shape
    dtype = feature.dtype
    work = torch.float64 if dtype == torch.float64 else torch.float32
    dev = flow.device
    # pixel centres in normalised coordinates, computed in float64 then rounded once
    ys = ((torch.arange(h, dtype=torch.float64, device=dev) * 2 + 1) / h - 1).to(work)
    xs = ((torch.arange(w, dtype=torch.float64, device=dev) * 2 + 1) / w - 1).to(work)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    scale = torch.tensor([2.0 / w, 2.0 / h], dtype=work, device=dev).view(1, 1, 1, 2)
    grid = torch.stack((gx, gy), dim=-1).unsqueeze(0) + flow.to(work).permute(0, 2, 3, 1) * scale
    out = F.grid_sample(feature.to(work), grid.expand(b, -1, -1, -1), mode="bilinear",
                        padding_mode="border", align_corners=False)
    return out.to(dtype)


class FlowAlign(nn.Module):
    """Align a coarse map onto a finer one with a learned flow field (the HFAM building block).

    The flow conv (3x3 over [up(coarse) || fine] -> 2 channels, spec Sec. 5.1) is
    zero-initialised, so an untrained module is plain bilinear upsampling and learns offsets
    from there. ``enabled=False`` (an ablation switch) always uses the zero flow.
    """

    def __init__(self, channels: int, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled
        self.flow = nn.Conv2d(2 * channels, 2, 3, padding=1)
        nn.init.zeros_(self.flow.weight)
        nn.init.zeros_(self.flow.bias)

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        size = fine.shape[-2:]
        up = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
        if not self.enabled:
            return up
        flow = self.flow(torch.cat([up, fine], dim=1))
        return flow_warp(coarse, flow)


class PPMContext(nn.Module):
    """PSPNet pyramid pooling on C5, concatenated with C5 and squeezed by a 3x3 conv (-> P5)."""

    def __init__(self, in_channels: int, channels: int, pool_scales: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.ppm = PPM(in_channels, channels, pool_scales)
        self.bottleneck = ConvBNReLU(in_channels + len(pool_scales) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([x, *self.ppm(x)], dim=1))


class ASPPContext(nn.Module):
    """DeepLabV3 atrous spatial pyramid pooling (1x1, three dilated 3x3, image pooling) -> P5.

    The spec's alternative context head (Sec. 5.1, rates 6/12/18). Here it sits on the stride-32
    C5, so the large rates mostly see padding on small tiles; PPM is the default for that reason.
    """

    def __init__(self, in_channels: int, channels: int, rates: Sequence[int] = (6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(in_channels, channels, 1)]
                                      + [ConvBNReLU(in_channels, channels, 3, dilation=r) for r in rates])
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, channels, 1))
        self.project = ConvBNReLU((len(rates) + 2) * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.image_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class AlignmentDecoder(nn.Module):
    """HFAM: flow-aligned top-down aggregation of C2..C5 and fusion at stride 4 (spec Sec. 5.1).

    Design choice (SFNet/UPerNet): the running top-down sum feeds the next level, while a 3x3
    ConvBNReLU "smooths" each P2..P4 before it is exposed and fused.
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 256, context: ContextKind = "ppm",
                 align: bool = True) -> None:
        super().__init__()
        c2, c3, c4, c5 = in_channels
        if context == "ppm":
            self.context: nn.Module = PPMContext(c5, channels)
        elif context == "aspp":
            self.context = ASPPContext(c5, channels)
        else:
            raise NetworkError(f"context must be 'ppm' or 'aspp', got {context!r}")
        self.laterals = nn.ModuleList([ConvBNReLU(c, channels, 1) for c in (c2, c3, c4)])
        self.top_down = nn.ModuleList([FlowAlign(channels, align) for _ in range(3)])
        self.smooth = nn.ModuleList([ConvBNReLU(channels, channels, 3) for _ in range(3)])
        self.to_stride4 = nn.ModuleList([FlowAlign(channels, align) for _ in range(3)])
        self.fuse = ConvBNReLU(4 * channels, channels, 3)

    def forward(self, feats: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """C2..C5 -> {"p2", "p3", "p4", "p5", "fused"} (all ``channels`` wide)."""
        p5 = self.context(feats[3])
        levels: list[torch.Tensor] = [p5]  # coarse to fine: P5, P4, P3, P2
        running = p5
        for i in (2, 1, 0):
            lateral = self.laterals[i](feats[i])
            running = lateral + self.top_down[i](running, lateral)
            levels.append(self.smooth[i](running))
        p5, p4, p3, p2 = levels
        aligned = [p2] + [self.to_stride4[i](p, p2) for i, p in enumerate((p3, p4, p5))]
        fused = self.fuse(torch.cat(aligned, dim=1))
        return {"p2": p2, "p3": p3, "p4": p4, "p5": p5, "fused": fused}


class HFDNet(NetworkModule):
    """The HFD-Net segmentation network (teacher or student; spec Sec. 5.1).

    Args:
        num_classes: K output classes.
        in_channels: input bands (SAR student: 2 for Sentinel-1 VV/VH; optical teacher: its bands).
        encoder: ``resnet18`` | ``resnet34`` | ``resnet50`` (spec default: resnet50).
        channels: decoder width (spec: 256).
        context: ``ppm`` (default) or ``aspp`` context head on C5.
        align: flow alignment on (the HFAM); ``False`` is the "without HFAM" ablation.
        dropout: dropout before the classifier (design choice, 0.1 as in PSPNet/UPerNet heads).
        dice_weight: weight of a soft Dice term added to CE (spec Sec. 5.3: 1 for the binary
            SpaceNet6 task; 0 by default).
        encoder_lr_mult: encoder LR multiplier in :meth:`param_groups` (spec: x0.1 or equal).
        encoder_width: ResNet base width (64 = torchvision, loads ImageNet weights; smaller values,
            e.g. 32, make the small built-in demo models; mmlc design choice).
    """

    def __init__(self, num_classes: int, in_channels: int = 2, encoder: str = "resnet50", channels: int = 256,
                 context: ContextKind = "ppm", align: bool = True, dropout: float = 0.1,
                 dice_weight: float = 0.0, encoder_lr_mult: float = 1.0, encoder_width: int = 64) -> None:
        super().__init__()
        if num_classes < 2:
            raise NetworkError(f"num_classes must be >= 2 (background counts as a class), got {num_classes}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.encoder_name = encoder
        self.dice_weight = dice_weight
        self.encoder_lr_mult = encoder_lr_mult
        self.encoder = build_resnet(encoder, in_channels=in_channels, base_width=encoder_width)
        self.decoder = AlignmentDecoder(self.encoder.out_channels, channels, context, align)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        #: channel count of every exposed feature level (what distillation adapters need).
        self.feature_channels: dict[str, int] = {k: channels for k in FEATURE_LEVELS}

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (B, K, H, W) at the input size and the aligned features ``p2..p5``, ``fused``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise NetworkError(f"HFD-Net ({self.encoder_name}) expects a (B, {self.in_channels}, H, W) tensor, "
                             f"got shape {tuple(x.shape)}; the model was built for {self.in_channels} bands")
        if self.training and x.shape[0] < 2:
            # the 1x1 pooled context branch has one value per channel: batch-norm cannot train on it
            raise NetworkError("HFD-Net trains on at least 2 tiles per batch (batch-norm on the pooled context); "
                             "raise the batch size or drop the last incomplete batch")
        feats = self.decoder(self.encoder.forward_features(x))
        logits = self.classifier(self.dropout(feats["fused"]))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits, feats

    def forward(self, x: torch.Tensor, return_features: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (no softmax); with ``return_features`` also the feature dict."""
        logits, feats = self.forward_features(x)
        return (logits, feats) if return_features else logits

    def seg_loss(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """CE ignoring ``IGNORE_INDEX`` (+ ``dice_weight`` x soft Dice); zero if nothing is labelled."""
        valid = target != IGNORE_INDEX
        if not bool(valid.any()):
            zero = logits.sum() * 0.0
            return zero, {"ce": 0.0}
        ce = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)
        loss = ce
        logs = {"ce": float(ce.detach())}
        if self.dice_weight > 0:
            dice = soft_dice_loss(logits, target)
            loss = loss + self.dice_weight * dice
            logs["dice"] = float(dice.detach())
        return loss, logs

    def training_step(self, inputs: list[torch.Tensor], target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """One supervised step on the single input (the contract of docs/contributing.md)."""
        if len(inputs) != 1:
            raise NetworkError(f"HFD-Net takes one input tensor, got {len(inputs)}")
        return self.seg_loss(self(inputs[0]), target)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Encoder at ``lr * encoder_lr_mult``, decoder and head at ``lr`` (spec Sec. 5.3)."""
        enc = [p for p in self.encoder.parameters() if p.requires_grad]
        enc_ids = {id(p) for p in enc}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in enc_ids]
        return [{"params": enc, "lr": lr * self.encoder_lr_mult, "weight_decay": weight_decay},
                {"params": rest, "lr": lr, "weight_decay": weight_decay}]

    def load_encoder_weights(self, source: Union[str, Path, Mapping[str, torch.Tensor]],
                             first_conv: FirstConvInit = "mean") -> LoadReport:
        """Load an ImageNet torchvision-layout ResNet file into the encoder (conv1 adapted)."""
        return load_resnet_weights(self.encoder, source, first_conv)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean over classes of the soft Dice on labelled pixels (Milletari et al. 2016)."""
    valid = (target != IGNORE_INDEX).unsqueeze(1).float()
    probs = logits.float().softmax(1) * valid
    onehot = F.one_hot(target.clamp(0, logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2).float() * valid
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    return 1.0 - ((2 * inter + eps) / (denom + eps)).mean()


def build_hfdnet(num_classes: int, in_channels: int = 2, encoder: str = "resnet50", **kwargs: object) -> HFDNet:
    """Registry builder; ``encoder`` is the variant (``resnet18``/``resnet34``/``resnet50``)."""
    if encoder not in resnet_names():
        raise NetworkError(f"unknown HFD-Net encoder {encoder!r}; choose one of {', '.join(resnet_names())}")
    return HFDNet(num_classes, in_channels=in_channels, encoder=encoder, **kwargs)  # type: ignore[arg-type]


register(ModelSpec(
    name="hfdnet",
    builder=build_hfdnet,
    head_kind="dense",
    modalities=(ModalitySpec("sar", default_bands=2),),
    channel_kwargs=lambda bands: {"in_channels": int(bands[0])},
    # spec Sec. 5.3: SGD momentum 0.9, wd 1e-4, lr 0.01, poly 0.9; batch 8-16; 30-200 epochs.
    # Design choice for small label sets (issue 21): an epoch holds at least 4 batches (on a few
    # hundred labelled pixels it would otherwise be one SGD step, the whole run 50 steps), and on a
    # label set of at most 100,000 labelled pixels a fresh network trained 50 epochs on every label
    # is the one kept (the few validation blocks picked a poor epoch there; docs/benchmarks.md).
    recipe=Recipe(optimizer="sgd", lr=0.01, weight_decay=1e-4, momentum=0.9, schedule="poly",
                  poly_power=0.9, epochs=50, batch_size=8, tile_size=256, min_batches_per_epoch=4,
                  refit_epochs=50, refit_max_labels=100_000),
    variants=("resnet50", "resnet34", "resnet18"),
    description="SAR segmentation network (ResNet + flow-aligned multi-scale decoder); the student "
                "of optical->SAR heterogeneous feature distillation (teacher: same network on optical bands).",
    paper="Gao & Dong, Heterogeneous Feature Distillation Network for SAR Image Semantic Segmentation, "
          "arXiv:2210.08988 (2022); GRSL 2023 (DHFA-Net), doi:10.1109/LGRS.2023.3293160",
))
