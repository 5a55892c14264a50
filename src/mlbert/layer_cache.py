"""Cached frozen layers: when the embeddings and the lowest k encoder layers are frozen, their output for a
training text (for each of its windows, with chunked reading) never changes, so it is computed the first
time the text is trained on and read back in every later epoch, where only the layers above and the head run.

The states are kept in memory, one (tokens, hidden) tensor per text (or window) without padding, in 16 or 32
bits (`TrainConfig.frozen_cache`); a cache that would not fit in its share of the machine's memory is not
made (the run trains uncached, and says so). Frozen layers run without dropout (train.freeze_lower_layers),
so cached and uncached training compute the same thing (tests/test_layer_cache.py).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from tqdm.auto import tqdm

from .batching import collate, inference_batches, show_progress
from .model import layer_stack

log = logging.getLogger("mlbert")

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MEMORY_SHARE = 0.5  # the most of the machine's available memory a cache may take


def available_memory() -> int:
    """Bytes of memory available now (Linux /proc/meminfo), else the physical total, else 0 (unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def cache_bytes(lengths: np.ndarray, hidden: int, storage: str) -> int:
    """What caching every text's states costs: its tokens times the hidden width times the storage's bytes."""
    return int(lengths.sum()) * hidden * DTYPES[storage].itemsize


def why_not_cached(model, freeze_layers: int, storage: str, lengths: np.ndarray, world: int, compile_: bool):
    """None when the frozen layers can be cached for this run, else the reason (said in the log)."""
    if storage == "off" or freeze_layers <= 0:
        return "frozen_cache off" if freeze_layers > 0 else "no frozen layers"
    n_layers = len(layer_stack(model.encoder))
    if model.pooling == "layers" and model.pool_layers > n_layers - freeze_layers + 1:
        return (
            f"pooling reads {model.pool_layers} layers, {model.pool_layers - (n_layers - freeze_layers + 1)} "
            "of them inside the frozen part"
        )
    if world > 1:
        return "the cache is per process and this run has several"
    if compile_:
        return "the compiled forward does not take cached states"
    need, have = cache_bytes(lengths, model.encoder.config.hidden_size, storage), available_memory()
    if have and need > MEMORY_SHARE * have:
        return f"it needs {need / 1e9:.1f} GB and {have / 1e9:.1f} GB are available"
    return None


def cache_for(model, layers: int, storage: str, train_enc, world: int, compile_: bool):
    """(an empty LayerCache of `layers` frozen layers over train_enc's texts or windows, None) where they can be
    cached, else (None, why not): the one place training and add-labels' distillation decide it."""
    why_not = why_not_cached(model, layers, storage, train_enc.lengths, world, compile_)
    if why_not is not None:
        return None, why_not
    return LayerCache(model, layers, storage, len(train_enc.input_ids)), None


class LayerCache:
    """The frozen lower layers' output per training text, filled on first use (see the module's docstring)."""

    def __init__(self, model, freeze_layers: int, storage: str, n_texts: int):
        self.model, self.layers, self.dtype = model, freeze_layers, DTYPES[storage]
        self.states: list[torch.Tensor | None] = [None] * n_texts
        self.filled = 0

    def covers(self, rows) -> bool:
        """Whether every one of these texts is cached already (a step that only reads the cache)."""
        return all(self.states[i] is not None for i in rows)

    @property
    def bytes(self) -> int:
        return sum(s.numel() * s.element_size() for s in self.states if s is not None)

    def batch(self, encoded, rows, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(states padded to the batch's longest text, attention mask) for these training rows."""
        rows = [int(i) for i in rows]
        missing = [i for i in rows if self.states[i] is None]
        if missing:
            self._fill(encoded, missing, device)
        width = max(self.states[i].shape[0] for i in rows)
        hidden = self.states[rows[0]].shape[1]
        states = torch.zeros(len(rows), width, hidden, dtype=torch.float32, device=device)
        mask = torch.zeros(len(rows), width, dtype=torch.int64, device=device)
        for k, i in enumerate(rows):
            n = self.states[i].shape[0]
            states[k, :n] = self.states[i]
            mask[k, :n] = 1
        return states, mask

    @property
    def full(self) -> bool:
        """Whether every text is cached (steps read only the cache from the first one)."""
        return self.filled == len(self.states)

    def _fill(self, encoded, rows: list[int], device: torch.device) -> None:
        batch = collate(encoded, rows)
        mask = batch["attention_mask"].to(device)
        with torch.no_grad():
            states = self.model.lower_states(batch["input_ids"].to(device), mask, self.layers)
        self._keep(rows, states, mask)

    def _keep(self, rows, states: torch.Tensor, mask: torch.Tensor) -> None:
        for k, i in enumerate(rows):
            n = int(mask[k].sum())
            self.filled += self.states[int(i)] is None
            self.states[int(i)] = states[k, :n].to("cpu", self.dtype).clone()

    @torch.no_grad()  # not inference_mode: the states are read by training steps later
    def fill_scoring(self, teacher, encoded, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """`teacher`'s probabilities for every text (input order), filling the cache on the way from its own
        lowest `layers` layers: one pass gives both where the cached model's frozen layers are a copy of the
        teacher's (add_labels "distill": the old model scores the texts the new one trains on; its first epoch
        then reads the cache instead of running those layers again). Computed in fp32, without dropout. Texts
        read whole: the windows of chunked reading would need combining into their texts' scores."""
        if getattr(encoded, "starts", None) is not None:
            raise ValueError("fill_scoring scores texts read whole, not in windows")
        was_training, device = teacher.training, next(teacher.parameters()).device
        teacher.eval()
        out: np.ndarray | None = None
        try:
            batches = inference_batches(encoded.lengths, batch_size)
            for rows in tqdm(batches, desc="predict", unit="batch", disable=not show_progress(progress), leave=False):
                batch = collate(encoded, rows)
                mask = batch["attention_mask"].to(device)
                states = teacher.lower_states(batch["input_ids"].to(device), mask, self.layers)
                probs = torch.sigmoid(teacher(None, mask, states, self.layers)).float().cpu().numpy()
                if out is None:
                    out = np.empty((len(encoded.input_ids), probs.shape[1]), dtype=np.float32)
                out[rows] = probs
                self._keep(rows, states, mask)
        finally:
            teacher.train(was_training)
        if out is None:
            raise ValueError("no texts to score")
        return out
