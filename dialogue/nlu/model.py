"""The joint intent classifier and slot tagger on top of the frozen sentence encoder.

JointBERT's design (Chen et al., 2019) with the encoder frozen: one transformer layer trained from
scratch over all-MiniLM-L6-v2's token states, then two heads. The token head tags every token of the
utterance with BIO tags of the slot kinds (an informable slot, "dontcare:<slot>", a booking slot,
"request:<slot>"); the sentence head gives independent probabilities of the act types (a turn may
affirm and ask to book at once). Freezing the encoder keeps training to a few minutes on two cores
(its states are computed once) and the artifact to a few megabytes.
"""

from __future__ import annotations

import torch
from torch import nn


def bio_tags(kinds: list[str]) -> list[str]:
    """ "O", then B- and I- of every kind."""
    return ["O", *(f"{p}-{k}" for k in kinds for p in ("B", "I"))]


class JointTagger(nn.Module):
    """Token states (B, T, dim) -> tag logits (B, T, n_tags) and intent logits (B, n_intents)."""

    def __init__(self, dim: int, n_tags: int, n_intents: int, heads: int = 6, dropout: float = 0.1) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True, norm_first=True
        )
        self.tags = nn.Linear(dim, n_tags)
        self.intents = nn.Linear(2 * dim, n_intents)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor, utterance: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.layer(hidden, src_key_padding_mask=~mask)
        u = utterance.unsqueeze(-1).float()
        pooled = (x * u).sum(1) / u.sum(1).clamp(min=1.0)
        return self.tags(x), self.intents(torch.cat([pooled, x[:, 0]], -1))
