"""The network: a pretrained encoder, a pooling step, dropout and a linear multi-label head.

An nn.Module and nothing else: it never opens a file (see model_io.py) and never sees a label name.
"""

from __future__ import annotations

import torch
from torch import nn

POOLINGS = ("cls", "mean")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(batch, seq, hidden) token states -> (batch, hidden) text vectors; padding never contributes."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")


class MultiLabelModel(nn.Module):
    """Encoder + pooling + dropout + linear head; returns one logit per label.

    The encoder is registered under its Hugging Face `base_model_prefix` (`bert` for BERT), so
    `model.safetensors` reads like a standard checkpoint and `AutoModel.from_pretrained` on a saved
    mlbert folder loads the fine-tuned encoder.
    """

    def __init__(self, encoder: nn.Module, n_labels: int, pooling: str = "cls", dropout: float = 0.1):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
        self.encoder_prefix = getattr(encoder, "base_model_prefix", "") or "encoder"
        self.add_module(self.encoder_prefix, encoder)
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, n_labels)
        nn.init.normal_(self.classifier.weight, std=getattr(encoder.config, "initializer_range", 0.02))
        nn.init.zeros_(self.classifier.bias)

    @property
    def encoder(self) -> nn.Module:
        return getattr(self, self.encoder_prefix)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.classifier.parameters())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, seq) ids and mask -> (batch, n_labels) logits."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.classifier(self.dropout(pool(hidden, attention_mask, self.pooling)))
