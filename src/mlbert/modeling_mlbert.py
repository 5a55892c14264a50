"""The mlbert network as a transformers class, for loading a model folder without mlbert.

Every model folder carries this file with model.py and heads.py beside it, and its config.json names
them in `auto_map`. So plain transformers refuses the folder unless asked to run that code:

    AutoModelForSequenceClassification.from_pretrained(folder)                          # ValueError
    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)  # mlbert's scores

and, when asked, builds the same encoder, pooling and head as mlbert (model.py's own code, not a copy),
so `sigmoid(logits)` equals mlbert's probabilities. Thresholds are not applied here: they live in the
folder's mlbert.json (`thresholds.per_label`, `global`, `default`). Imports nothing of mlbert but
model.py, which imports heads.py: transformers copies exactly the files a remote-code module imports.
"""

from __future__ import annotations

import torch
from transformers import CONFIG_MAPPING, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .model import MultiLabelModel, bare_encoder


class MlbertConfig(PretrainedConfig):
    """config.json of an mlbert folder: the encoder's own config under `encoder`, the head's settings, labels."""

    model_type = "mlbert"

    def __init__(self, encoder=None, pooling="cls", head="linear", pool_layers=4, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder or {}
        self.pooling, self.head, self.pool_layers, self.dropout = pooling, head, pool_layers, dropout

    def encoder_config(self) -> PretrainedConfig:
        inner = dict(self.encoder)
        return CONFIG_MAPPING[inner["model_type"]].from_dict(inner)


class MlbertForMultiLabelClassification(PreTrainedModel):
    """Encoder + pooling + multi-label head with mlbert's parameter names; `logits` are one per label."""

    config_class = MlbertConfig
    # Never a prefix of a saved name: the weights are stored under the encoder's own prefix (bert.*) and
    # classifier.*, exactly as this module names its parameters, so transformers renames nothing.
    base_model_prefix = "mlbert"
    encoder = MultiLabelModel.encoder
    token_states = MultiLabelModel.token_states
    _logits = MultiLabelModel.forward

    def __init__(self, config: MlbertConfig):
        super().__init__(config)
        encoder_config = config.encoder_config()
        MultiLabelModel._build(
            self, bare_encoder(encoder_config), config.num_labels, config.pooling, config.dropout, config.head,
            config.pool_layers,
        )  # fmt: skip
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Nothing to initialise: every parameter comes from the folder's model.safetensors."""

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        logits = self._logits(input_ids, attention_mask)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return SequenceClassifierOutput(loss=loss, logits=logits)
