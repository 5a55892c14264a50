"""Chunked reading of long texts: a text's windows are encoded as texts of their own (sharing length-sorted
batches with other texts' windows) and their logits combined into the text's logits, after the head.

Combining after the head keeps every inference path unchanged up to the logits (the torch model, the ONNX
graph and the server score windows like short texts) and makes the combination one small function that
training and inference share. The combinations (TrainConfig.chunk_aggregation):
- max: a label's logit is its highest window's (evidence anywhere in the text counts once, fully);
- mean: the windows' mean (evidence must run through the text);
- lse: log-mean-exp, a soft maximum between the two (log-sum-exp less log(windows), so that a text's score
  does not grow with its number of windows).
"""

from __future__ import annotations

import math

import torch

COMBINATIONS = ("max", "mean", "lse")  # config.ChunkAggregation names the same (tests/test_chunking.py)


def combine_windows(logits: torch.Tensor, owner: torch.Tensor, n_texts: int, how: str) -> torch.Tensor:
    """(windows, labels) logits and each window's text (0 .. n_texts-1) -> (n_texts, labels) logits.
    Differentiable: training backpropagates through it."""
    if how not in COMBINATIONS:
        raise ValueError(f"unknown chunk aggregation {how!r}; expected one of {COMBINATIONS}")
    index = owner.to(logits.device).unsqueeze(1).expand_as(logits)
    shape = (n_texts, logits.shape[1])
    if how == "max":
        return logits.new_full(shape, -math.inf).scatter_reduce(0, index, logits, "amax", include_self=True)
    if how == "mean":
        return logits.new_zeros(shape).scatter_reduce(0, index, logits, "mean", include_self=False)
    top = logits.new_full(shape, -math.inf).scatter_reduce(0, index, logits.detach(), "amax", include_self=True)
    summed = logits.new_zeros(shape).index_add(0, owner.to(logits.device), torch.exp(logits - top[owner]))
    counts = torch.bincount(owner.to(logits.device), minlength=n_texts).clamp(min=1).to(logits.dtype)
    return top + torch.log(summed) - torch.log(counts).unsqueeze(1)
