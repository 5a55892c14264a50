"""The network: a pretrained encoder, a pooling step and a multi-label head (see heads.py).

An nn.Module and nothing else: it never opens a file (see model_io.py) and never sees a label name.
It imports no other mlbert module but heads.py: both travel in every model folder for transformers'
`trust_remote_code` loader (see modeling_mlbert.py).
"""

from __future__ import annotations

import torch
from torch import nn

from .heads import TOKEN_HEADS, VECTOR_POOLINGS, make_head, pool

POOLINGS = (*VECTOR_POOLINGS, "layers")


def bare_encoder(config) -> nn.Module:
    """A randomly initialised encoder from its transformers config, without BERT's pooler (never used here;
    dropping it also keeps DDP from failing on unused weights)."""
    from transformers import AutoModel

    try:
        encoder = AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:  # encoders with no pooler take no such argument
        encoder = AutoModel.from_config(config)
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


def layer_stack(encoder: nn.Module) -> nn.ModuleList | None:
    """A BERT-style encoder's list of layers (`encoder.encoder.layer`), or None for an encoder built otherwise:
    what freezing and caching the lower layers work on."""
    return getattr(getattr(encoder, "encoder", None), "layer", None)


class MultiLabelModel(nn.Module):
    """Encoder + pooling + head; returns one logit per label.

    Pooling `layers` uses the last `pool_layers` encoder layers instead of the last one: their
    mean-pooled vectors are concatenated for the vector heads, their token states concatenated for
    the token heads. The encoder is registered under its Hugging Face `base_model_prefix` (`bert` for
    BERT), so `model.safetensors` reads like a standard checkpoint and a saved folder can seed another
    run (`mlbert train --model FOLDER`, encoders.load_encoder). The linear head keeps its original names
    (`classifier.weight`, `classifier.bias`), so folders written before the other heads existed load.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_labels: int,
        pooling: str = "cls",
        dropout: float = 0.1,
        head: str = "linear",
        pool_layers: int = 4,
    ):
        super().__init__()
        self._build(encoder, n_labels, pooling, dropout, head, pool_layers)

    def _build(self, encoder: nn.Module, n_labels: int, pooling: str, dropout: float, head: str, pool_layers: int):
        """Register the encoder and head; shared with the transformers class (modeling_mlbert.py), so both
        hold the same parameter names and compute the same scores."""
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
        n_layers = getattr(encoder.config, "num_hidden_layers", 1)
        if pooling == "layers" and not 1 <= pool_layers <= n_layers:
            raise ValueError(f"pool_layers must be between 1 and the encoder's {n_layers} layers, got {pool_layers}")
        self.encoder_prefix = getattr(encoder, "base_model_prefix", "") or "encoder"
        self.add_module(self.encoder_prefix, encoder)
        self.pooling, self.head, self.pool_layers = pooling, head, pool_layers
        width = encoder.config.hidden_size * (pool_layers if pooling == "layers" else 1)
        std = getattr(encoder.config, "initializer_range", 0.02)
        self.classifier = make_head(head, width, n_labels, dropout, std, pooling)
        # The linear and cosine heads read the pooled vector through dropout; the other heads hold their own.
        self.dropout = nn.Dropout(dropout) if head in ("linear", "cosine") else nn.Identity()

    @classmethod
    def from_config(cls, encoder: nn.Module, n_labels: int, config) -> MultiLabelModel:
        """The network a TrainConfig describes (its pooling, dropout, head and pool_layers): the one place
        training and loading build it. A TrainConfig's "auto" choices are resolved first."""
        if hasattr(config, "resolved"):
            config = config.resolved()
        return cls(
            encoder,
            n_labels,
            pooling=config.pooling,
            dropout=config.dropout,
            head=config.head,
            pool_layers=config.pool_layers,
        )

    @property
    def encoder(self) -> nn.Module:
        return getattr(self, self.encoder_prefix)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.classifier.parameters())

    def token_states(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor,
        states: torch.Tensor | None = None,
        from_layer: int = 0,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(batch, seq, width): the last layer's token states, or the last k layers' side by side. With
        `states` (the output of the lowest `from_layer` layers, see lower_states) only the layers above run;
        with `inputs_embeds` (word embeddings in place of input_ids) the encoder starts from them."""
        if states is not None:
            return self._upper_states(states, attention_mask, from_layer)
        inputs = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
        if self.pooling != "layers":
            return self.encoder(**inputs, attention_mask=attention_mask).last_hidden_state
        out = self.encoder(**inputs, attention_mask=attention_mask, output_hidden_states=True)
        return torch.cat(out.hidden_states[-self.pool_layers :], dim=-1)

    def lower_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_layers: int) -> torch.Tensor:
        """(batch, seq, hidden): a BERT-style encoder's states after its embeddings and lowest `n_layers`
        layers, computed as its own forward computes them; what train.py caches when those are frozen."""
        hidden = self.encoder.embeddings(input_ids=input_ids)
        mask = self._layer_mask(hidden, attention_mask)
        for layer in layer_stack(self.encoder)[:n_layers]:
            hidden = layer(hidden, mask)
        return hidden

    def _upper_states(self, states: torch.Tensor, attention_mask: torch.Tensor, from_layer: int) -> torch.Tensor:
        mask = self._layer_mask(states, attention_mask)
        outputs = [states]
        for layer in layer_stack(self.encoder)[from_layer:]:
            outputs.append(layer(outputs[-1], mask))
        if self.pooling != "layers":
            return outputs[-1]
        if self.pool_layers > len(outputs):
            raise ValueError(f"pooling {self.pool_layers} layers needs the states below layer {from_layer}")
        return torch.cat(outputs[-self.pool_layers :], dim=-1)

    def _layer_mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        """The attention mask in the form the encoder's layers take, made as the encoder's forward makes it."""
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(
            config=self.encoder.config, inputs_embeds=hidden, attention_mask=attention_mask
        )

    def forward(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor,
        states: torch.Tensor | None = None,
        from_layer: int = 0,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(batch, seq) ids and mask -> (batch, n_labels) logits; or from `states`, the cached output of
        the lowest `from_layer` layers (training with frozen lower layers, layer_cache.py); or from
        `inputs_embeds`, word embeddings in place of the ids (explanations differentiate by them, explain.py)."""
        hidden = self.token_states(input_ids, attention_mask, states, from_layer, inputs_embeds)
        if self.head in TOKEN_HEADS:
            return self.classifier(hidden, attention_mask)
        vector = pool(hidden, attention_mask, self.pooling)
        return self.classifier(self.dropout(vector))
