"""The two training objectives: M3's masked-patch reconstruction and CLaMP 2's symmetric InfoNCE.

Each objective is a small ``nn.Module`` around the model (what DDP wraps; ``.model`` is what the
checkpoints hold) plus a ``step(module, batch) -> (loss, metrics)`` the shared loop calls.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from clamp2_engine.models import CLaMP2Model, M3Model


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank (rank order); gradients flow back to each rank's own slice."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated in favour of a private API; still the public autograd gather
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        return torch.cat(all_gather(x.contiguous()), dim=0)


def contrastive_loss(
    text: torch.Tensor, music: torch.Tensor, logit_scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE over the global batch on pooled, not L2-normalised features (the reference's
    ``ClipLoss`` with ``gather_with_grad=True, local_loss=False``); also the in-batch top-1 accuracy."""
    text, music = gather_with_grad(text.float()), gather_with_grad(music.float())
    logits = logit_scale * text @ music.t()
    labels = torch.arange(len(logits), device=logits.device)
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    with torch.no_grad():
        acc = ((logits.argmax(1) == labels).float().mean() + (logits.argmax(0) == labels).float().mean()) / 2
    return loss, acc


class M3Objective(nn.Module):
    """Encoder over corrupted patches, decoder rebuilding the selected ones; returns the mean loss."""

    def __init__(self, model: M3Model):
        super().__init__()
        self.model = model

    def forward(
        self, patches: torch.Tensor, masks: torch.Tensor, selection: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        return self.model(patches, masks, selection, targets)

    @staticmethod
    def step(module: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = module(batch["patches"], batch["masks"], batch["selection"], batch["targets"])
        return loss, {}


class CLaMP2Objective(nn.Module):
    """Pooled, projected text and music features of a batch of pairs."""

    def __init__(self, model: CLaMP2Model, logit_scale: float = 1.0):
        super().__init__()
        self.model = model
        self.logit_scale = logit_scale

    def forward(
        self, text: torch.Tensor, text_masks: torch.Tensor, music: torch.Tensor, music_masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            self.model.get_text_features(text, text_masks, normalized=True),
            self.model.get_music_features(music, music_masks, normalized=True),
        )

    def step(self, module: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        text, music = module(batch["text"], batch["text_masks"], batch["music"], batch["music_masks"])
        loss, acc = contrastive_loss(text, music, self.logit_scale)
        return loss, {"acc": acc}
