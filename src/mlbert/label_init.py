"""Heads that start from what the labels mean: every per-label parameter is set from the encoded label text
(label_text.py), so that before any training a text scores high on the labels whose text it resembles. A
zero-shot classifier is this start with no training after it (MultiLabelClassifier.from_labels).

Every head ends in a per-label layer over some features f(x) (heads.output_layer): the pooled vector for
`linear`, the hidden ReLU layer for `mlp`, the pooled vector less the sample texts' mean at unit length for
`cosine` (its centre set first), the pooled GRU states for `gru`, and for `label-attention` label
l's own attention-weighted token states, whose queries are first aimed at the label text's tokens. For
label l, with u_l the direction from the sample texts' mean features to the label text's features, the
similarity s_l(x) = u_l . f(x) is standardised over sample texts (mean m_l, deviation d_l), and

    weight_l = SCALE * u_l / d_l,    bias_l = logit(prior_l) - SCALE * m_l / d_l

so a label's logit starts at its prior log-odds plus SCALE for each deviation its similarity stands above
the sample's mean: informative, and small enough that fine-tuning starts from moderate gradients.
Standardising per label matters: raw similarities differ by label far more than their ranking does.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from .batching import Encoded, collate, inference_batches, take_rows
from .heads import TOKEN_HEADS, CosineHead, LabelAttentionHead, output_layer, pool

SCALE = 1.5  # logit per deviation of similarity above the sample's mean
QUERY_SHARPNESS = 2.0  # label-attention: score per deviation of a token's likeness to the label's tokens
SAMPLE_TEXTS = 256  # texts (windows, with chunked reading) whose features centre and scale the similarities
SAMPLE_SEED = 0  # which windows of the sample texts, when they are read in windows
LABEL_BATCH = 8  # label-attention: label texts a batch (each yields labels x width features)
MIN_DEVIATION = 1e-6


@torch.inference_mode()
def init_head_from_labels(
    model,
    label_enc: Encoded,
    sample_enc: Encoded,
    priors: np.ndarray,
    batch_size: int = 64,
    contrast: bool = False,
    owners: np.ndarray | None = None,
) -> None:
    """Set `model`'s per-label parameters from its labels' encoded texts (one text per label, in label
    order; or several, with `owners` giving each text's label (label_text.flat_texts): a label then reads as
    its texts' mean features). `sample_enc`: texts like those the model will score (a sample of training or
    dev texts, of which at most SAMPLE_TEXTS windows are read when they are chunked; the label texts
    themselves when there are none); `priors`: each label's expected share of texts. With `contrast`, a
    text's standardised similarity to a label is taken less its mean over all labels (still linear in the
    features): a text that resembles every label text (a long or generic one) no longer takes them all (the
    zero-shot start; BENCHMARKS.md)."""
    owners = np.arange(len(label_enc)) if owners is None else np.asarray(owners)
    if len(owners) != len(label_enc) or set(owners.tolist()) != set(range(len(priors))):
        raise ValueError(f"{len(label_enc)} label texts (owners {len(owners)}) do not cover {len(priors)} labels")
    if getattr(sample_enc, "starts", None) is not None:  # chunked reading: a sample of windows, not of texts
        windows = sample_enc.window_texts()
        sample_enc = take_rows(windows, sample_rows(len(windows), SAMPLE_SEED, SAMPLE_TEXTS))
    was_training = model.training
    model.eval()
    try:
        head = model.classifier
        sample_features = None  # the sample's (rows, features), where computed ahead
        if isinstance(head, CosineHead):  # centred on the sample's mean vector before any features are read
            vectors = list(_vector_batches(model, sample_enc, batch_size))
            if vectors:
                head.centre.copy_(torch.cat([v for _, v in vectors]).mean(0).to(head.centre.dtype))
            sample_features = [(rows, head.features(v).float().cpu()) for rows, v in vectors]
        if isinstance(head, LabelAttentionHead):
            _aim_queries(model, head, label_enc, sample_enc, batch_size, owners)
        label_f = _own_features(model, label_enc, batch_size, owners)
        # The sample's features are kept for the second pass where they are vectors (texts, features); for
        # label-attention they are (texts, labels, width), too large with thousands of labels: computed again.
        kept, total, count = [], None, 0
        for rows, features in sample_features or _feature_batches(model, sample_enc, batch_size):
            total = features.sum(0) if total is None else total + features.sum(0)
            count += len(features)
            if features.dim() == 2:
                kept.append((rows, features))
        if total is None:
            raise ValueError("no sample texts to take features from")
        direction = torch.nn.functional.normalize(label_f - total / count, dim=-1)  # (labels, features)
        similarity = torch.empty(len(sample_enc), len(label_f))
        for rows, features in kept or _feature_batches(model, sample_enc, batch_size):
            similarity[torch.as_tensor(rows)] = (
                torch.einsum("slf,lf->sl", features, direction) if features.dim() == 3 else features @ direction.T
            )
        mean = similarity.mean(0)
        deviation = similarity.std(0, correction=0).clamp(min=MIN_DEVIATION)
        # standardised similarity z = slope . f + offset, per label
        slope, offset = direction / deviation.unsqueeze(1), -mean / deviation
        if contrast and len(label_f) > 1:
            slope, offset = slope - slope.mean(0), offset - offset.mean()
            z = (similarity - mean) / deviation
            contrasted = z - z.mean(1, keepdim=True)  # standardised again, per label
            spread = contrasted.std(0, correction=0).clamp(min=MIN_DEVIATION)
            slope, offset = slope / spread.unsqueeze(1), (offset - contrasted.mean(0)) / spread
        weight, bias = output_layer(head)
        prior = torch.as_tensor(np.clip(priors, 1e-4, 0.5), dtype=weight.dtype)
        weight.copy_(SCALE * slope)
        bias.copy_(torch.logit(prior) + SCALE * offset)
    finally:
        model.train(was_training)


def _states(model, encoded: Encoded, batch_size: int):
    """(index rows, token states, mask) batch by batch, on the model's device."""
    device = next(model.parameters()).device
    for rows in inference_batches(encoded.lengths, batch_size):
        batch = collate(encoded, rows)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        yield rows, model.token_states(ids, mask), mask


def _vector_batches(model, encoded: Encoded, batch_size: int):
    """(rows, pooled text vectors) batch by batch, on the model's device: what a vector head reads."""
    for rows, hidden, mask in _states(model, encoded, batch_size):
        yield rows, pool(hidden, mask, model.pooling)


def _feature_batches(model, encoded: Encoded, batch_size: int):
    """(rows, what the head's per-label layer reads) batch by batch: (batch, features), or for label-attention
    (batch, labels, width)."""
    head = model.classifier
    if model.head in TOKEN_HEADS:
        for rows, hidden, mask in _states(model, encoded, batch_size):
            yield rows, head.features(hidden, mask).float().cpu()
        return
    for rows, vectors in _vector_batches(model, encoded, batch_size):
        # mlp: through its hidden layer; cosine: centred, at unit length
        yield rows, (head.features(vectors) if hasattr(head, "features") else vectors).float().cpu()


def _own_features(model, label_enc: Encoded, batch_size: int, owners: np.ndarray) -> torch.Tensor:
    """(labels, features): each label's texts' mean features, as that label reads them (for label-attention:
    through the label's own query, of the (batch, labels, width) computed)."""
    owner = torch.as_tensor(owners)
    per_label = model.head == "label-attention"

    def own(rows: list[int], features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = owner[torch.as_tensor(rows)]
        return index, features[torch.arange(len(rows)), index] if per_label else features

    batches = _feature_batches(model, label_enc, LABEL_BATCH if per_label else batch_size)
    return _mean_by_owner((own(rows, features) for rows, features in batches), owner)


def _mean_by_owner(parts: Iterable[tuple[torch.Tensor, torch.Tensor]], owner: torch.Tensor) -> torch.Tensor:
    """(labels, width): each label's mean row, from (owning label of each row, rows) pairs: a label with
    several texts reads as their mean (label_text.flat_texts)."""
    total = None
    for index, rows in parts:
        if total is None:
            total = rows.new_zeros((int(owner.max()) + 1, rows.shape[-1]))
        total.index_add_(0, index, rows)
    return total / torch.bincount(owner, minlength=len(total)).unsqueeze(1).to(total.dtype)


def _aim_queries(
    model, head: LabelAttentionHead, label_enc: Encoded, sample_enc: Encoded, batch_size: int, owners: np.ndarray
) -> None:
    """Point each label's attention query at its texts' tokens: the direction from the sample's mean token
    key to the mean key of the label's texts, scaled so a token's score is QUERY_SHARPNESS per deviation."""
    width = head.queries.shape[1]
    total, outer, count = torch.zeros(width, dtype=torch.float64), torch.zeros(width, width, dtype=torch.float64), 0
    for _, hidden, mask in _states(model, sample_enc, batch_size):
        keys = head.keys(hidden)[mask.bool()].double().cpu()  # the real tokens' keys
        total += keys.sum(0)
        outer += keys.T @ keys
        count += len(keys)
    mean = total / max(count, 1)
    covariance = outer / max(count, 1) - torch.outer(mean, mean)
    owner = torch.as_tensor(owners)

    def mean_key(rows: list[int], hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        content = _content_mask(mask)  # a label's words, without [CLS] and [SEP]
        keys = head.keys(hidden).double().cpu() * content.unsqueeze(-1)
        return owner[torch.as_tensor(rows)], keys.sum(1) / content.sum(1, keepdim=True).clamp(min=1)

    label_keys = _mean_by_owner((mean_key(*batch) for batch in _states(model, label_enc, batch_size)), owner)
    direction = torch.nn.functional.normalize(label_keys - mean, dim=-1)
    deviation = torch.einsum("la,ab,lb->l", direction, covariance, direction).clamp(min=MIN_DEVIATION**2).sqrt()
    head.queries.copy_((QUERY_SHARPNESS * direction / deviation.unsqueeze(1)).to(head.queries.dtype))


def _content_mask(mask: torch.Tensor) -> torch.Tensor:
    """The real tokens less each text's first and last (the tokenizer's [CLS] and [SEP]) where it has more."""
    content = mask.bool().cpu().clone()
    lengths = content.sum(1)
    long_enough = lengths > 2
    rows = torch.arange(len(content))[long_enough]
    content[rows, 0] = False
    content[rows, lengths[long_enough] - 1] = False
    return content.double()


def label_priors(counts: np.ndarray, n_texts: int) -> np.ndarray:
    """Each label's share of texts, smoothed ((count + 1) / (n + 2)) so an unseen label is not impossible."""
    return (np.asarray(counts, dtype=np.float64) + 1.0) / (n_texts + 2.0)


def sample_rows(n: int, seed: int, limit: int = SAMPLE_TEXTS) -> np.ndarray:
    """A seeded sample of at most `limit` of n rows, in order."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
