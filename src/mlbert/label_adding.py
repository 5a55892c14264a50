"""Adding labels to a trained model. With old_labels "keep" the encoder and the head's shared parts stay as they
are, only the new labels' own rows (heads.per_label_names) are trained, and the trained model's rows are joined
to them: the old labels' scores are exactly what they were, thresholds included. With "distill" the joined
model itself trains, the old labels learning the old model's scores (MultiLabelClassifier.add_labels).
"""

from __future__ import annotations

import copy

import torch

from .distributed import process_state
from .heads import per_label_names
from .layer_cache import LayerCache, cache_for
from .model import MultiLabelModel

HEAD_PREFIX = "classifier."


def _per_label_keys(model: MultiLabelModel) -> set[str]:
    return {HEAD_PREFIX + name for name in per_label_names(model.classifier)}


def model_for_new_labels(old: MultiLabelModel, n_new: int, config) -> MultiLabelModel:
    """A model for `n_new` labels sharing a copy of `old`'s encoder and head weights (its per-label rows
    fresh), with every parameter but those rows frozen."""
    model = MultiLabelModel.from_config(copy.deepcopy(old.encoder), n_new, config)
    keys = _per_label_keys(model)
    shared = {k: v for k, v in old.state_dict().items() if k not in keys}
    missing, unexpected = model.load_state_dict(shared, strict=False)
    if set(missing) != keys or unexpected:
        raise ValueError(f"the new model does not match the old one: missing {missing}, unexpected {unexpected}")
    for name, p in model.named_parameters():
        p.requires_grad_(name in keys)
    return model


def joined_model(old: MultiLabelModel, new: MultiLabelModel, config) -> MultiLabelModel:
    """`old`'s network with `new`'s label rows after its own: columns old labels, then new labels."""
    old_state, new_state = old.state_dict(), new.state_dict()
    n_labels = old_state[HEAD_PREFIX + per_label_names(old.classifier)[-1]].shape[0]
    n_new = new_state[HEAD_PREFIX + per_label_names(new.classifier)[-1]].shape[0]
    joined = MultiLabelModel.from_config(copy.deepcopy(old.encoder), n_labels + n_new, config)
    state = dict(old_state)
    for key in _per_label_keys(old):
        state[key] = torch.cat([old_state[key], new_state[key].to(old_state[key].dtype)])
    joined.load_state_dict(state)
    return joined.eval()


def distill_cache(model: MultiLabelModel, config, train_enc) -> LayerCache | None:
    """An empty LayerCache for the lower layers that `model` (the joined network, a copy of the old one) will
    train with frozen, for the old model's pass over the training texts to fill (LayerCache.fill_scoring);
    None where they would not be cached anyway (layer_cache.why_not_cached), or the texts are read in windows,
    or the run has several processes."""
    layers = config.freeze_layers
    if not isinstance(layers, int) or layers <= 0 or getattr(train_enc, "starts", None) is not None:
        return None
    world = process_state().num_processes
    return cache_for(model, layers, config.frozen_cache, train_enc, world, config.compile)[0]
