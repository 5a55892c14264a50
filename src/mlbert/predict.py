"""Batched inference: encoded texts -> (n_texts, n_labels) probabilities, and probabilities -> label sets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .batching import Encoded, collate, inference_batches, show_progress, take_rows
from .chunking import combine_windows
from .config import PRECISIONS as CONFIG_PRECISIONS
from .distributed import process_state

# Inference arithmetic: config.Precision less "auto", which backends.py resolves before inference starts.
PRECISIONS = tuple(p for p in CONFIG_PRECISIONS if p != "auto")


@torch.inference_mode()
def predict_proba(
    model,
    encoded: Encoded,
    batch_size: int = 64,
    progress: bool = False,
    device: torch.device | str | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """Probabilities for every text in input order; batches are length-sorted, padding kept minimal.

    Args:
        model: a torch module returning logits, or an exported model (mlbert.export.OnnxModel) that
            maps numpy (input_ids, attention_mask) to probabilities.
        device: where the batches go; None: where the model's weights are (a model fresh from
            training on a GPU stays there).
        precision: "bf16" runs the torch module under bf16 autocast (fast only on CPUs with native bf16).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if getattr(encoded, "starts", None) is None:
        return _scores(model, encoded, batch_size, progress, device, precision, logits=False)
    # Chunked reading: every window scored as a text (length-sorted with the other texts' windows), then
    # combined into its text's logits (chunking.py).
    window_logits = _scores(model, encoded.window_texts(), batch_size, progress, device, precision, logits=True)
    owner = np.repeat(np.arange(len(encoded)), encoded.chunk_counts)
    combined = combine_windows(torch.from_numpy(window_logits), torch.from_numpy(owner), len(encoded), encoded.combine)
    return torch.sigmoid(combined).numpy().astype(np.float32)


def _scores(model, encoded: Encoded, batch_size: int, progress: bool, device, precision: str, logits: bool):
    """(n_texts, n_labels) probabilities, or logits (from an ONNX model's probabilities: their log-odds)."""
    from tqdm.auto import tqdm

    is_torch = isinstance(model, torch.nn.Module)
    was_training = model.training if is_torch else False
    if is_torch:
        model.eval()
        if device is None:
            device = next(model.parameters()).device
    out: np.ndarray | None = None
    batches = inference_batches(encoded.lengths, batch_size)
    try:
        for idx in tqdm(batches, desc="predict", unit="batch", disable=not show_progress(progress), leave=False):
            batch = collate(encoded, idx)
            if is_torch:
                with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    scores = model(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float()
                probs = (scores if logits else torch.sigmoid(scores)).cpu().numpy()
            else:
                probs = model(batch["input_ids"].numpy(), batch["attention_mask"].numpy())
                if logits:
                    clipped = np.clip(probs.astype(np.float64), 1e-12, 1 - 1e-12)
                    probs = np.log(clipped) - np.log1p(-clipped)
            if out is None:
                out = np.empty((len(encoded), probs.shape[1]), dtype=np.float32)
            out[idx] = probs
    finally:
        if is_torch:
            model.train(was_training)
    if out is None:
        raise ValueError("no texts to predict")
    return out


def predict_proba_all(
    model,
    encoded: Encoded,
    batch_size: int = 64,
    progress: bool = False,
    device: torch.device | str | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """`predict_proba` shared out over the processes of a distributed run (accelerate launch, torchrun):
    each process scores every world-th length-sorted batch, and every process gets all the rows back."""
    state = process_state()
    if state.num_processes == 1:
        return predict_proba(model, encoded, batch_size, progress, device, precision)
    from accelerate.utils import gather_object

    batches = inference_batches(encoded.lengths, batch_size)[state.process_index :: state.num_processes]
    mine = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    share = take_rows(encoded, mine)
    probs = predict_proba(model, share, batch_size, progress, device, precision) if len(mine) else None
    out: np.ndarray | None = None
    for rows, part in gather_object([(mine, probs)]):
        if part is None:
            continue
        if out is None:
            out = np.empty((len(encoded), part.shape[1]), dtype=np.float32)
        out[rows] = part
    if out is None:
        raise ValueError("no texts to predict")
    return out


def chosen_columns(row: np.ndarray, cut: np.ndarray, top_k: int | None = None, at_least_one: bool = False) -> list[int]:
    """Column indices of one text's labels: at or above their cut-off, highest score first, at most
    top_k; with at_least_one, the best column when none passes. Compared in the scores' own precision, as
    metrics.apply_thresholds does: a float32 score equal to float32(cut) passes in both."""
    order = np.argsort(-row, kind="stable")
    passes = row >= np.asarray(cut).astype(row.dtype)
    chosen = [int(j) for j in order if passes[j]]
    if top_k is not None:
        chosen = chosen[:top_k]
    if not chosen and at_least_one:
        chosen = [int(order[0])]
    return chosen


def decide(
    probs: np.ndarray,
    thresholds: np.ndarray | float,
    labels: Sequence[str],
    top_k: int | None = None,
    at_least_one: bool = False,
) -> list[list[str]]:
    """Label names per text: those at or above their threshold, highest score first.

    Args:
        top_k: keep at most this many of them (with threshold 0 this is plain top-k).
        at_least_one: when no label passes, return the single highest-scoring one.
    """
    cut = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (probs.shape[1],))
    return [[labels[j] for j in chosen_columns(row, cut, top_k, at_least_one)] for row in probs]
