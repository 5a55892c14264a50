"""Pooling and the multi-label heads: from encoder output to one logit per label. nn.Modules and nothing else.

`linear`, `mlp` and `cosine` read one pooled vector per text; `label-attention` and `gru` read the token states
themselves, because the point of both is to look at tokens (a label's own evidence, word order) that a
single pooled vector has already averaged away. Every head ignores padding: masked positions get no
attention weight and never enter a GRU state or a pool.
"""

from __future__ import annotations

import torch
from torch import nn

# No mlbert import here or in model.py: both are copied into every model folder for transformers'
# `trust_remote_code` loader (modeling_mlbert.py), which can only bring the files they import beside them.
# config.py names the choices; tests/test_heads.py checks that these modules build exactly those.
VECTOR_POOLINGS = ("cls", "mean", "max")  # pool() also takes the model's "layers" (see model.py), as a mean
TOKEN_HEADS = ("label-attention", "gru")  # heads that read token states, not a pooled vector


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(batch, seq, width) token states -> (batch, width) text vectors; padding never contributes. `layers`
    (states of the last layers side by side, model.py) is their mean: each layer's mean, concatenated."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if pooling in ("mean", "layers"):
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if pooling == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(1)
    raise ValueError(f"unknown pooling {pooling!r}; expected one of {(*VECTOR_POOLINGS, 'layers')}")


def _init_linear(layer: nn.Linear, std: float) -> nn.Linear:
    nn.init.normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)
    return layer


class MlpHead(nn.Module):
    """dropout 0.2 -> Linear -> ReLU -> Linear: a hidden layer for when a linear map underfits."""

    def __init__(self, width: int, n_labels: int, dropout: float, std: float, hidden: int | None = None):
        super().__init__()
        hidden = hidden or width
        self.dropout = nn.Dropout(dropout)
        # PyTorch's default (Kaiming-uniform) init for the hidden layer: BERT's N(0, 0.02) suits its own
        # 768-wide layers, and between two layers that small it would leave the head almost no gradient.
        self.hidden = nn.Linear(width, hidden)
        self.out = _init_linear(nn.Linear(hidden, n_labels), std)

    def features(self, pooled: torch.Tensor) -> torch.Tensor:
        """What the output layer reads: the hidden layer's activations."""
        return torch.relu(self.hidden(self.dropout(pooled)))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(pooled))


class CosineHead(nn.Module):
    """A linear layer over the pooled vector moved by a fixed `centre` and scaled to unit length: the cosine
    space a sentence encoder (all-MiniLM-L6-v2) is trained to compare texts in, where a text and a label's
    text compare best (zero-shot's head). The centre is the sample texts' mean vector when the head starts
    from label texts (label_init.py); zeros otherwise. It travels as a buffer in the weights file."""

    def __init__(self, width: int, n_labels: int, std: float):
        super().__init__()
        self.register_buffer("centre", torch.zeros(width))
        self.out = _init_linear(nn.Linear(width, n_labels), std)

    def features(self, pooled: torch.Tensor) -> torch.Tensor:
        """What the output layer reads: the centred vector at unit length."""
        return nn.functional.normalize(pooled - self.centre, dim=-1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(pooled))


class LabelAttentionHead(nn.Module):
    """Label-wise attention (as in LAAT / CAML): each label attends over the tokens with its own query
    and classifies its own weighted sum of token states, so rare labels can key on their own words."""

    def __init__(self, width: int, n_labels: int, dropout: float, std: float, attention_width: int | None = None):
        super().__init__()
        attention_width = attention_width or width
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Linear(width, attention_width)  # tanh(W h): the attention space
        self.queries = nn.Parameter(torch.randn(n_labels, attention_width) * std)
        self.weight = nn.Parameter(torch.randn(n_labels, width) * std)  # one classifier per label
        self.bias = nn.Parameter(torch.zeros(n_labels))

    def keys(self, hidden: torch.Tensor) -> torch.Tensor:
        """(batch, seq, attention width): the tokens in the space the label queries score them in."""
        return torch.tanh(self.project(hidden))

    def features(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, seq, width) token states, (batch, seq) mask -> (batch, n_labels, width): each label's own
        attention-weighted sum of the token states, which that label's classifier reads."""
        hidden = self.dropout(hidden)
        scores = torch.einsum("bsa,la->bls", self.keys(hidden), self.queries)
        scores = scores.masked_fill(~mask.bool().unsqueeze(1), torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)  # (batch, labels, seq)
        return torch.einsum("bls,bsh->blh", weights, hidden)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, seq, width) token states, (batch, seq) mask -> (batch, n_labels) logits."""
        return (self.features(hidden, mask) * self.weight).sum(-1) + self.bias


class GruHead(nn.Module):
    """A bidirectional GRU over the token states, pooled over real tokens, then a linear layer.

    Two one-way GRUs instead of nn.GRU(bidirectional=True) over a padded batch: the backward one
    reads each text reversed within its own length, so padding never enters a state, without packed
    sequences (which ONNX export does not take).
    """

    def __init__(
        self, width: int, n_labels: int, dropout: float, std: float, pooling: str, gru_width: int | None = None
    ):
        super().__init__()
        gru_width = gru_width or width // 2
        self.pooling = pooling
        self.forward_gru = nn.GRU(width, gru_width, batch_first=True)
        self.backward_gru = nn.GRU(width, gru_width, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.out = _init_linear(nn.Linear(2 * gru_width, n_labels), std)

    @staticmethod
    def _reverse(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Reverse each row's first lengths[b] positions, leave its padding where it is."""
        positions = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
        index = torch.where(positions < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - positions, positions)
        return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[2]))

    def features(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, 2 x gru width): both directions' states, pooled; what the output layer reads."""
        lengths = mask.sum(1).clamp(min=1)
        ahead, _ = self.forward_gru(hidden)
        back, _ = self.backward_gru(self._reverse(hidden, lengths))
        if self.pooling == "cls":  # each direction's state after reading the whole text
            last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, ahead.shape[2])
            vector = torch.cat([ahead.gather(1, last).squeeze(1), back.gather(1, last).squeeze(1)], dim=-1)
        else:
            states = torch.cat([ahead, self._reverse(back, lengths)], dim=-1)
            vector = pool(states, mask, self.pooling)
        return vector

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.features(hidden, mask)))


# The method's MLP head: dropout 0.2 -> Linear -> ReLU -> Linear.
MLP_DROPOUT = 0.2


def _linear(width: int, n_labels: int, dropout: float, std: float, pooling: str) -> nn.Module:
    # A plain nn.Linear, not a module holding one: its parameters keep the names the first mlbert folders
    # were saved with (`classifier.weight`, `classifier.bias`). The model applies its dropout (model.py).
    return _init_linear(nn.Linear(width, n_labels), std)


HEAD_BUILDERS = {
    "linear": _linear,
    "mlp": lambda width, n_labels, dropout, std, pooling: MlpHead(width, n_labels, MLP_DROPOUT, std),
    "cosine": lambda width, n_labels, dropout, std, pooling: CosineHead(width, n_labels, std),
    "label-attention": lambda width, n_labels, dropout, std, pooling: LabelAttentionHead(width, n_labels, dropout, std),
    "gru": GruHead,
}


def output_layer(head: nn.Module) -> tuple[nn.Parameter, nn.Parameter]:
    """(weight (n_labels, features), bias (n_labels,)) of a head's last, per-label layer: what reads the
    head's `features` (the pooled vector itself for `linear`)."""
    if isinstance(head, nn.Linear):
        return head.weight, head.bias
    if isinstance(head, LabelAttentionHead):
        return head.weight, head.bias
    return head.out.weight, head.out.bias


def per_label_names(head: nn.Module) -> tuple[str, ...]:
    """Names, in the head's state dict, of the parameters with one row per label (everything else in a head
    is shared by all labels): what adding labels to a trained model extends."""
    if isinstance(head, nn.Linear):
        return ("weight", "bias")
    if isinstance(head, LabelAttentionHead):
        return ("queries", "weight", "bias")
    return ("out.weight", "out.bias")


def make_head(kind: str, width: int, n_labels: int, dropout: float, std: float, pooling: str) -> nn.Module:
    """The head `kind` (see config.Head) over `width`-wide vectors or token states."""
    if pooling not in (*VECTOR_POOLINGS, "layers"):
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {(*VECTOR_POOLINGS, 'layers')}")
    if kind not in HEAD_BUILDERS:
        raise ValueError(f"unknown head {kind!r}; expected one of {tuple(HEAD_BUILDERS)}")
    return HEAD_BUILDERS[kind](width, n_labels, dropout, std, pooling)
