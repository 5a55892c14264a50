"""The training loop on Hugging Face Accelerate: AdamW, warm-up and decay, accumulation, clipping,
dev evaluation each epoch, early stopping, best-epoch weights, resumable checkpoints.

Accelerate owns devices and process groups, so the same loop runs on a CPU, a GPU or several
processes; this module never parses a flag and never writes the final model folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .batching import Encoded, collate, rank_batches, show_progress
from .checkpoint import CHECKPOINTS, read_checkpoint, restore_rng, rng_state, state_dict_cpu, write_checkpoint
from .chunking import combine_windows
from .config import AUTO_FREEZE_SHARE, AUTO_SHORTEN_SHARE, TrainConfig
from .diagnostics import collapse_warning
from .distributed import use_cpu
from .errors import ConfigError
from .layer_cache import LayerCache, cache_for
from .losses import bce_loss, make_loss, pos_weights
from .metrics import compute_metrics
from .model import MultiLabelModel, layer_stack
from .pacer import Pacer
from .precision import resolve_precision
from .predict import predict_proba_all
from .thresholds import tune_global_threshold

log = logging.getLogger("mlbert")

LOG_EVERY_STEPS = 20


@dataclass
class TrainResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_step: int = 0
    steps: int = 0
    frozen_layers: int = 0  # encoder layers kept frozen (what freeze_layers "auto" became)
    max_length: int = 0  # tokens the texts were cut to when max_length "auto" halved it (0: not cut)
    budget: dict[str, Any] = field(default_factory=dict)  # the plan and the estimate (Pacer.summary)
    history: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0
    # dev's probabilities under best_state when an evaluation of this run scored all of dev with it (None: not
    # scored here, e.g. resumed past it, or scored on a sample): the classifier tunes on them without rescoring
    dev_probs: np.ndarray | None = None


class RunLog:
    """Training events as JSON lines in `<out>/train_log.jsonl` (read later by reports)."""

    def __init__(self, path: Path | None):
        self.path = path

    def write(self, event: str, **values: Any) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"event": event, "time": round(time.time(), 3), **values}) + "\n")


def _depth(name: str, n_layers: int) -> int:
    """How many layers below the top an encoder parameter sits: the top layer 0, embeddings n_layers."""
    match = re.search(r"\.layers?\.(\d+)\.", name)
    if match:
        return n_layers - 1 - int(match.group(1))
    return n_layers if "embed" in name else 0


def adamw(param_groups, **settings) -> torch.optim.AdamW:
    """AdamW with its fused kernel: one pass over each tensor instead of one per arithmetic step. On a
    CPU, torch's default is the per-tensor loop, 5x slower over MiniLM's parameters: over a quarter of a
    training step at batch 32 of short texts (BENCHMARKS.md, Speed). Same update rule."""
    try:
        return torch.optim.AdamW(param_groups, fused=True, **settings)
    except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(param_groups, **settings)


def _param_groups(model: MultiLabelModel, config: TrainConfig) -> list[dict[str, Any]]:
    head = {id(p) for p in model.head_parameters()}
    n_layers = getattr(model.encoder.config, "num_hidden_layers", 0)
    groups: dict[tuple[bool, bool, int], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # Decaying biases and LayerNorm gains only shrinks them toward 0, which helps nothing.
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        is_head = id(p) in head
        depth = 0 if is_head or config.lr_decay == 1 else _depth(name, n_layers)
        groups.setdefault((is_head, no_decay, depth), []).append(p)
    return [
        {
            "params": ps,
            "lr": config.head_lr if is_head else config.lr * config.lr_decay**depth,
            "weight_decay": 0.0 if no_decay else config.weight_decay,
            "is_head": is_head,
        }
        for (is_head, no_decay, depth), ps in groups.items()
    ]


def freeze_lower_layers(model: MultiLabelModel, n: int) -> int:
    """Stop gradients into the embeddings and the lowest n encoder layers, and turn their dropout off ->
    parameters frozen. Without dropout a frozen layer's output is a fixed function of the text: it can be
    cached (layer_cache.py), and training sees the features the pretrained encoder gives."""
    if n <= 0:
        return 0
    layers = layer_stack(model.encoder)
    if layers is None:
        raise ConfigError(f"freeze_layers: {type(model.encoder).__name__} has no encoder.layer list to freeze")
    if n > len(layers):
        raise ConfigError(f"freeze_layers is {n} but the encoder has only {len(layers)} layers")
    frozen = 0
    for module in [model.encoder.embeddings, *layers[:n]]:
        for p in module.parameters():
            p.requires_grad_(False)
            frozen += p.numel()
        for dropout in module.modules():
            if isinstance(dropout, torch.nn.Dropout):
                dropout.p = 0.0
    return frozen


def padded_tokens(lengths: np.ndarray, batch) -> int:
    """What a micro-batch costs: its texts times its longest text (each batch is padded to its own longest)."""
    return len(batch) * int(lengths[batch].max()) if len(batch) else 0


def mean_step_tokens(lengths: np.ndarray, batches, steps_per_epoch: int) -> float:
    """The mean padded tokens of an optimizer step over one epoch's micro-batches (what Pacer prices a step at)."""
    return sum(padded_tokens(lengths, b) for b in batches) / max(1, steps_per_epoch)


def data_fingerprint(encoded: Encoded, targets: np.ndarray) -> str:
    """A hash of what the model trains on, so a resume cannot silently switch datasets."""
    if hasattr(encoded, "fingerprint"):  # a memory-mapped TokenStore hashes its own file chunk by chunk
        return encoded.fingerprint()

    h = hashlib.sha256()
    for ids in encoded.input_ids:
        h.update(ids.tobytes())
        h.update(b"|")
    if getattr(encoded, "starts", None) is not None:  # chunked: which windows make which text
        h.update(encoded.starts.tobytes())
    h.update(np.packbits(targets.astype(bool)).tobytes())
    h.update(str(targets.shape).encode())
    return h.hexdigest()[:16]


@dataclass
class TrainState:
    """Where a run stands. Saved in every checkpoint's state.json, so a resumed run continues from here."""

    epoch: int = 0  # epochs finished
    batches_done: int = 0  # micro-batches finished in the epoch in progress
    global_step: int = 0  # optimizer steps
    best_score: float | None = None
    best_epoch: int = 0
    best_step: int = 0  # the optimizer step the best state was scored at
    bad_epochs: int = 0  # evaluations since the best one (one per epoch unless eval_steps or a budget)
    planned_steps: int = 0  # a budgeted run's planned last step (kept on resume); 0 without a budget
    planned_eval_every: int = 0  # and its steps between evaluations
    frozen_layers: int = -1  # freeze_layers "auto" under a budget: what the run decided (-1: not yet)
    cut_to: int = -1  # max_length "auto" under a budget: the length the texts were cut to (0: none; -1: not yet)
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    world_size: int = 1
    # The epoch in progress so far (this process's share), so that a resumed epoch reports its whole loss.
    epoch_loss: float = 0.0  # summed over examples
    epoch_examples: int = 0
    epoch_seconds: float = 0.0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class Loop:
    """What each epoch works with, prepared once by `train_model`."""

    config: TrainConfig
    accelerator: Any
    model: torch.nn.Module  # as Accelerate prepared it (wrapped for DDP in a distributed run)
    raw_model: MultiLabelModel
    forward: Callable[..., torch.Tensor]  # the training forward: `model`, or its torch.compile
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    train: tuple[Encoded, np.ndarray]
    precision: str
    epochs: int
    n_batches: int  # this process's micro-batches per epoch
    pacer: Pacer
    runlog: RunLog
    checkpoint: Callable[[TrainState], None]
    bar: Any  # one progress bar for the whole run, so its ETA is the run's, not the epoch's
    cache: LayerCache | None = None  # the frozen layers' output per training text (layer_cache.py)
    dev_columns: slice = field(default_factory=lambda: slice(None))  # the outputs dev is annotated for


def train_model(
    model: MultiLabelModel,
    config: TrainConfig,
    train: tuple[Encoded, np.ndarray],
    dev: tuple[Encoded, np.ndarray] | None,
    out_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    run_started: float | None = None,
    after_texts: int = 0,
    threshold_texts: int = 0,
    cut_to: int = 0,
    dev_columns: slice = slice(None),
    layer_cache: LayerCache | None = None,
) -> TrainResult:
    """Fine-tune `model` in place and return the best evaluated weights (the last ones without dev).

    `run_started` (time.perf_counter() when the whole run began, default now), `after_texts` (how many texts
    the caller predicts after training besides dev, e.g. a test split) and `threshold_texts` (the training
    texts it would predict to tune thresholds; a budget may take fewer: TrainResult.budget says how many)
    are what a `time_budget` plans by. `cut_to` (max_length "auto" under a budget): the length the run may cut
    the training and dev texts to, in place, if its plan covers too little (Pacer; TrainResult.max_length).
    `dev_columns`: the model's outputs that dev's targets are for (all by default). `layer_cache`: the frozen
    layers' output for the training texts, filled ahead for `model` with `config.freeze_layers` frozen
    (LayerCache.fill_scoring); from the first step on, steps read it.
    """
    started = time.perf_counter()
    loop, state, best_state = _prepare(model, config, train, out_dir, resume, progress, layer_cache)
    loop.dev_columns = dev_columns
    best_dev_probs = None
    if state.cut_to > 0:  # a resumed run that had cut its texts: the same cut, before any step
        _cut_texts(loop, state.cut_to, dev, state.global_step)
    elif cut_to and state.cut_to < 0 and loop.accelerator.num_processes == 1:
        loop.pacer.shorten = lambda state: _cut_now(loop, state, cut_to, dev)
    loop.pacer.start(run_started if run_started is not None else started, dev, after_texts, threshold_texts, state)
    if state.stopped_early or state.epoch >= loop.epochs:
        log.info("the interrupted run had already finished training")
    while not state.stopped_early and state.epoch < loop.epochs:
        record = _train_epoch(loop, state)
        epoch_over = state.batches_done >= loop.n_batches or state.global_step >= loop.pacer.total_steps
        t0 = time.perf_counter()
        scored = loop.pacer.scored_dev(dev)
        improved, probs = _score_epoch(loop, state, record, scored, epoch_over)
        loop.pacer.evaluated(state, time.perf_counter() - t0 if dev is not None else 0.0)
        if improved:
            best_state = state_dict_cpu(loop.raw_model)
            best_dev_probs = probs if scored is dev else None
            if out_dir is not None and loop.accelerator.is_main_process:
                write_checkpoint(
                    out_dir / CHECKPOINTS / "best", best_state, {"epoch": record["epoch"], "score": state.best_score}
                )
        state.history.append(record)
        loop.runlog.write("epoch", **record)
        if on_epoch is not None:
            on_epoch(record)
        if epoch_over:
            state.epoch, state.batches_done = state.epoch + 1, 0
        stop = stop_reason(state, config, loop.epochs, dev is not None, loop.pacer)
        if stop:
            state.stopped_early = True
            log.info("%s", stop)
        loop.checkpoint(state)

    loop.bar.close()
    loop.accelerator.wait_for_everyone()
    if best_state is None:  # resumed after the last epoch with no best checkpoint on disk
        best_state = state_dict_cpu(loop.raw_model)
    seconds = time.perf_counter() - started
    loop.runlog.write(
        "end",
        best_epoch=state.best_epoch,
        best_step=state.best_step,
        stopped_early=state.stopped_early,
        seconds=seconds,
    )
    too_short = loop.pacer.too_short
    warnings = [too_short] if too_short else []
    best = next((h for h in state.history if h["epoch"] == state.best_epoch), {})
    if best.get("collapsed"):
        fix = (
            "with this few steps a larger --time-budget is the likely fix"
            if too_short
            else "see train_log.jsonl for the likely fixes"
        )
        warnings.append(f"the best epoch ({state.best_epoch}) had collapsed to the label base rates; {fix}")
    chosen = loop.config.freeze_layers
    frozen_layers = chosen if chosen != "auto" else max(0, state.frozen_layers)
    return TrainResult(
        best_state=best_state,
        best_epoch=state.best_epoch,
        best_step=state.best_step,
        steps=state.global_step,
        frozen_layers=frozen_layers,
        max_length=max(0, state.cut_to),
        budget=loop.pacer.summary(state),
        history=state.history,
        stopped_early=state.stopped_early,
        seconds=seconds,
        warnings=warnings,
        dev_probs=best_dev_probs,
    )


def _prepare(
    model: MultiLabelModel,
    config: TrainConfig,
    train: tuple[Encoded, np.ndarray],
    out_dir: Path | None,
    resume: bool,
    progress: bool = True,
    layer_cache: LayerCache | None = None,
) -> tuple[Loop, TrainState, dict[str, torch.Tensor] | None]:
    """Devices, optimizer, schedule, loss and log; on `resume`, the interrupted run's state restored."""
    # Imported here, not at the top: Accelerate and transformers' optimization module cost about a second
    # of start-up that a process which only predicts (predict, serve, evaluate) would pay for nothing.
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    set_seed(config.seed)
    config = config.resolved()  # pooling, head (fit resolves them first) and freeze_layers without a budget
    precision, why = resolve_precision(config.precision, "cuda" if torch.cuda.is_available() else "cpu")
    log.info("precision %s (%s)", precision, why)
    # Autocast by hand rather than Accelerator(mixed_precision=...): Accelerate's state is one per
    # process, so a second fit in the same Python session could not change precision.
    # cpu=True without CUDA: otherwise Accelerate would not join processes started on a CPU machine.
    accelerator = Accelerator(cpu=use_cpu())
    decide_freezing = config.freeze_layers == "auto"  # under a budget: decided at the end of the probe
    frozen = freeze_lower_layers(model, 0 if decide_freezing else config.freeze_layers)
    train_enc, train_y = train
    fingerprint = data_fingerprint(train_enc, train_y)
    rank, world = accelerator.process_index, accelerator.num_processes
    lengths = train_enc.lengths
    first_epoch = rank_batches(lengths, config.batch_size, config.seed, 0, rank, world, _sizes(train_enc))
    n_batches = len(first_epoch)
    steps_per_epoch = math.ceil(n_batches / config.grad_accum)
    step_tokens = mean_step_tokens(lengths, first_epoch, steps_per_epoch)
    epochs = planned_epochs(config.epochs, steps_per_epoch)
    if not config.epochs:
        log.info("epochs auto -> %d (%d optimizer steps per epoch)", epochs, steps_per_epoch)
    total_steps = steps_per_epoch * epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    if layer_cache is not None:
        _check_given_cache(layer_cache, model, config, train_enc, world)
        cache = layer_cache
    else:
        cache = None if decide_freezing else _layer_cache(model, config, config.freeze_layers, train_enc, world)
    # From the second epoch every text's frozen output is cached (a resumed run starts with an empty cache,
    # but it keeps its plan: Pacer.start); a cache filled ahead is read from the first, every step alike.
    pacer = Pacer(config, total_steps, steps_per_epoch, accelerator, step_tokens,
                  steps_per_epoch if cache is not None and not cache.full else None)  # fmt: skip

    pw = pos_weights(train_y, config.pos_weight, config.pos_weight_cap)
    pos_weight = torch.from_numpy(pw).to(accelerator.device) if pw is not None else None
    loss_fn = make_loss(
        config.loss, pos_weight, config.focal_gamma, config.asl_gamma_pos, config.asl_gamma_neg, config.asl_clip
    )
    optimizer = adamw(_param_groups(model, config), lr=config.lr)
    # A plain function (not the bound method): LambdaLR then keeps it out of the checkpoints' scheduler state.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: pacer.lr_factor(step))

    ckpt_dir = out_dir / CHECKPOINTS if out_dir is not None else None
    # Only the main process writes: the log, the checkpoints (and, in the CLI's jobs, the model folder).
    runlog = RunLog(out_dir / "train_log.jsonl" if out_dir is not None and accelerator.is_main_process else None)
    pacer.runlog = runlog
    state, best_state = TrainState(world_size=world), None
    if resume:
        state, best_state = _restore(ckpt_dir, config, fingerprint, model, optimizer, scheduler, world)
        log.info("resuming at epoch %d, batch %d (step %d)", state.epoch + 1, state.batches_done, state.global_step)
        runlog.write("resume", epoch=state.epoch, batches_done=state.batches_done)

    if decide_freezing and state.frozen_layers > 0:  # a resumed run froze them before it stopped
        frozen = freeze_lower_layers(model, state.frozen_layers)
        cache = _layer_cache(model, config, state.frozen_layers, train_enc, world)
    hold_encoder(optimizer, state.global_step < config.freeze_encoder_steps)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    raw_model: MultiLabelModel = accelerator.unwrap_model(prepared)

    def checkpoint(state: TrainState) -> None:
        if ckpt_dir is None or not accelerator.is_main_process:
            return
        opt_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **rng_state()}
        write_checkpoint(
            ckpt_dir / "last",
            state_dict_cpu(raw_model),
            {**dataclasses.asdict(state), "config": config.to_dict(), "fingerprint": fingerprint},
            opt_state,
        )

    runlog.write(
        "start",
        epochs=epochs,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        n_train=len(train_enc),
        precision=precision,
        precision_reason=why,
        frozen_parameters=frozen,
        config=config.to_dict(),
    )
    # Only the training forward is compiled; evaluation and the saved weights use the plain module.
    forward = torch.compile(prepared, dynamic=True) if config.compile else prepared
    loop = Loop(
        config=config,
        accelerator=accelerator,
        model=prepared,
        raw_model=raw_model,
        forward=forward,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=loss_fn,
        train=train,
        precision=precision,
        epochs=epochs,
        n_batches=n_batches,
        pacer=pacer,
        runlog=runlog,
        checkpoint=checkpoint,
        cache=cache,
        bar=tqdm(
            total=min(n_batches * epochs, pacer.total_steps * config.grad_accum),
            initial=min(state.epoch * n_batches + state.batches_done, pacer.total_steps * config.grad_accum),
            unit="batch",
            disable=not show_progress(progress),
            leave=False,
            dynamic_ncols=True,
        ),
    )
    if decide_freezing and state.frozen_layers < 0 and world == 1:
        pacer.freeze = lambda state: _freeze_now(loop, state)
    elif decide_freezing and state.frozen_layers < 0:  # DDP fixes the parameters that get gradients at the start
        log.info("freeze_layers auto: nothing frozen in a run of several processes (set --freeze-layers N)")
    return loop, state, best_state


def _layer_cache(model: MultiLabelModel, config: TrainConfig, layers: int, train_enc, world: int):
    """A LayerCache for `layers` frozen layers, or None (logged: none frozen, or why they cannot be cached)."""
    if not layers:
        return None
    cache, why_not = cache_for(model, layers, config.frozen_cache, train_enc, world, config.compile)
    if cache is None:
        log.info("frozen layers: recomputed every step, not cached: %s", why_not)
    else:
        log.info("frozen layers: their output is computed once per text and read back after (%s)", config.frozen_cache)
    return cache  # per window when chunked


def _check_given_cache(cache: LayerCache, model: MultiLabelModel, config: TrainConfig, train_enc, world: int) -> None:
    """A cache filled ahead must hold this model's frozen layers for these texts (ValueError: a caller's bug)."""
    if cache.model is not model or cache.layers != config.freeze_layers or world > 1:
        raise ValueError(
            f"the given layer cache holds {cache.layers} layers of another model or run; this run freezes "
            f"{config.freeze_layers} of its own in {world} process(es)"
        )
    if len(cache.states) != len(train_enc.input_ids):
        raise ValueError(
            f"the given layer cache has {len(cache.states)} texts, training has {len(train_enc.input_ids)}"
        )


def _freeze_now(loop: Loop, state: TrainState) -> int:
    """freeze_layers "auto": the pacer found the budget buys few epochs; freeze AUTO_FREEZE_SHARE of the layers
    (and the embeddings) from this step on -> how many. Their weights stop moving (no gradient: AdamW skips
    them), and their output is cached from here on."""
    model = loop.raw_model
    layers = int(len(layer_stack(model.encoder) or ()) * AUTO_FREEZE_SHARE)
    if layers:
        freeze_lower_layers(model, layers)
        loop.cache = _layer_cache(model, loop.config, layers, loop.train[0], loop.accelerator.num_processes)
        if loop.cache is not None:  # every text has been read once, and cached, an epoch from now
            loop.pacer.cached_from = state.global_step + loop.pacer.steps_per_epoch
    state.frozen_layers = layers
    loop.runlog.write("freeze", step=state.global_step, layers=layers, cached=loop.cache is not None)
    return layers


def _cut_now(loop: Loop, state: TrainState, length: int, dev) -> int:
    """max_length "auto": the pacer found the budget buys less than AUTO_SHORTEN_EPOCHS epochs; cut the texts to
    `length` tokens from this step on if at least AUTO_SHORTEN_SHARE of the training texts are longer -> the
    length (0: not cut)."""
    lengths = loop.train[0].lengths
    share = float((lengths > length).mean()) if len(lengths) else 0.0
    state.cut_to = length if share >= AUTO_SHORTEN_SHARE else 0
    loop.runlog.write("cut", step=state.global_step, max_length=state.cut_to, longer_share=round(share, 3))
    if state.cut_to:
        _cut_texts(loop, length, dev, state.global_step)
    else:
        log.info("max_length auto: %.0f%% of the texts are longer than %d tokens; not cut", 100 * share, length)
    return state.cut_to


def _cut_texts(loop: Loop, length: int, dev, step: int) -> None:
    """Cut the training and dev texts to `length` tokens in place (Encoded.cut); what the pacer and the layer
    cache know of their lengths starts over."""
    train_enc = loop.train[0]
    n = train_enc.cut(length)
    if dev is not None:
        dev[0].cut(length)
    config, world, lengths = loop.config, loop.accelerator.num_processes, train_enc.lengths
    batches = rank_batches(lengths, config.batch_size, config.seed, 0, loop.accelerator.process_index, world)
    loop.pacer.step_tokens = mean_step_tokens(lengths, batches, loop.pacer.steps_per_epoch)
    if loop.cache is not None:  # states cached so far hold the longer texts
        loop.cache = LayerCache(loop.raw_model, loop.cache.layers, config.frozen_cache, len(train_enc.input_ids))
        loop.pacer.cached_from = step + loop.pacer.steps_per_epoch
    log.info("max_length auto: %d training texts cut to %d tokens from here (dev too)", n, length)


def _train_epoch(loop: Loop, state: TrainState) -> dict[str, Any]:
    """One pass over this process's batches (from where a resumed run stopped) -> the epoch's history record."""
    config, accelerator, optimizer, scheduler = loop.config, loop.accelerator, loop.optimizer, loop.scheduler
    train_enc, train_y = loop.train
    epoch = state.epoch
    rank, world = accelerator.process_index, accelerator.num_processes
    loop.model.train()
    lengths = train_enc.lengths
    batches = rank_batches(lengths, config.batch_size, config.seed, epoch, rank, world, _sizes(train_enc))
    skip = state.batches_done
    if not skip:  # a fresh epoch; a resumed one continues the sums its checkpoint carried
        state.epoch_loss, state.epoch_examples, state.epoch_seconds = 0.0, 0, 0.0
    seconds_before = state.epoch_seconds
    bar = loop.bar
    bar.set_description(f"epoch {epoch + 1}/{loop.epochs}")
    seen, t0, run_loss, run_n = 0, time.perf_counter(), 0.0, 0
    for i in range(skip, len(batches)):
        group_start = i - i % config.grad_accum
        group_size = min(config.grad_accum, len(batches) - group_start)
        last_in_group = i == group_start + group_size - 1
        if i == group_start:
            group = batches[i : i + group_size]
            loop.pacer.step_begins(sum(padded_tokens(lengths, b) for b in group), _cached(loop, group))
        # Between optimizer steps, skip the gradient all-reduce (a no-op in one process).
        with accelerator.no_sync(loop.model) if not last_in_group else contextlib.nullcontext():
            with torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=loop.precision == "bf16"):
                logits = _logits(loop, batches[i])
            labels = torch.from_numpy(np.ascontiguousarray(train_y[batches[i]])).to(accelerator.device)
            loss = loop.loss_fn(logits.float(), labels)
            accelerator.backward(loss / group_size)
        if last_in_group:
            if config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(loop.model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.global_step += 1
            hold_encoder(optimizer, state.global_step < config.freeze_encoder_steps)
            loop.pacer.stepped(state, loop.raw_model, loop.train)
            if loop.pacer.total_steps * config.grad_accum != bar.total:  # a budget's plan moved the end
                bar.total = min(loop.n_batches * loop.epochs, loop.pacer.total_steps * config.grad_accum)
        state.batches_done = i + 1
        seen += len(batches[i])
        batch_loss = float(loss.detach()) * len(batches[i])
        run_loss += batch_loss
        state.epoch_loss += batch_loss
        state.epoch_examples += len(batches[i])
        state.epoch_seconds = seconds_before + time.perf_counter() - t0
        run_n += len(batches[i])
        rate = seen / max(time.perf_counter() - t0, 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{run_loss / run_n:.4f}", ex_s=f"{rate:.1f}")
        if last_in_group and state.global_step % LOG_EVERY_STEPS == 0:
            loop.runlog.write(
                "step",
                epoch=epoch + 1,
                step=state.global_step,
                loss=run_loss / run_n,
                lr=scheduler.get_last_lr()[0],
                examples_per_s=rate,
            )
            # Without a live progress bar (logs, CI), say something every 100 steps instead.
            if bar.disable and state.global_step % (LOG_EVERY_STEPS * 5) == 0:
                log.info(
                    "epoch %d step %d/%d loss %.4f %.1f ex/s",
                    epoch + 1,
                    state.global_step,
                    loop.pacer.total_steps,
                    run_loss / run_n,
                    rate,
                )
            run_loss, run_n = 0.0, 0
        if last_in_group and config.save_steps and state.global_step % config.save_steps == 0 and i + 1 < len(batches):
            loop.checkpoint(state)
        if last_in_group and loop.pacer.pause(state):
            break
    epoch_seconds = seconds_before + time.perf_counter() - t0
    epoch_loss, seen = state.epoch_loss, state.epoch_examples
    if world > 1:  # the epoch's loss and throughput over all processes, not the main one's share
        totals = accelerator.reduce(torch.tensor([epoch_loss, float(seen)], dtype=torch.float64), reduction="sum")
        epoch_loss, seen = float(totals[0]), int(totals[1])
    return {
        "epoch": epoch + 1,
        "step": state.global_step,
        "seconds": round(epoch_seconds, 1),
        "train_loss": epoch_loss / max(seen, 1),
        "train_examples_per_s": round(seen / max(epoch_seconds, 1e-9), 2),
    }


def _sizes(encoded) -> np.ndarray | None:
    """Windows per training text with chunked reading (batches are filled by windows), else None."""
    return encoded.chunk_counts if getattr(encoded, "starts", None) is not None else None


def _logits(loop: Loop, rows: np.ndarray) -> torch.Tensor:
    """The training forward of one micro-batch: from its token ids, or, with cached frozen layers, from their
    cached output (computed now for the texts not seen before); with chunked reading, every window of the
    batch's texts in one padded batch, their logits combined per text (chunking.py)."""
    device, encoded = loop.accelerator.device, loop.train[0]
    chunked = getattr(encoded, "starts", None) is not None
    windows, owner = encoded.windows(rows) if chunked else (rows, None)
    texts = encoded.window_texts() if chunked else encoded
    if loop.cache is not None:  # the cache holds windows (a text's, when not chunked)
        states, mask = loop.cache.batch(texts, windows, device)
        logits = loop.forward(None, mask, states, loop.cache.layers)
    else:
        batch = collate(texts, windows)
        logits = loop.forward(batch["input_ids"].to(device), batch["attention_mask"].to(device))
    return combine_windows(logits, torch.from_numpy(owner), len(rows), encoded.combine) if chunked else logits


def _cached(loop: Loop, group: list[np.ndarray]) -> bool:
    """Whether every window of these micro-batches is in the layer cache (the step reads only the cache)."""
    if loop.cache is None:
        return False
    encoded = loop.train[0]
    chunked = getattr(encoded, "starts", None) is not None
    return all(loop.cache.covers(encoded.windows(b)[0] if chunked else b) for b in group)


def _score_epoch(
    loop: Loop,
    state: TrainState,
    record: dict[str, Any],
    dev: tuple[Encoded, np.ndarray] | None,
    epoch_over: bool = True,
) -> tuple[bool, np.ndarray | None]:
    """Score the model on dev into `record` (at an epoch's end, or at an evaluation step inside it), and keep
    the best in `state` -> (whether it improved, dev's probabilities; None without dev)."""
    config, epoch = loop.config, record["epoch"]
    where = f"epoch {epoch}/{loop.epochs}"
    if not epoch_over or loop.pacer.eval_every:
        where += f" step {state.global_step}/{loop.pacer.total_steps}"
    if dev is None:  # no way to choose: the last state is the one kept
        state.best_epoch, state.best_step = epoch, state.global_step
        log.info("%s done in %.0fs", where, record["seconds"])
        return True, None
    fields, m, warning, probs = _score_dev(loop.raw_model, dev, config, loop.accelerator.device, loop.dev_columns)
    record.update(fields)
    score = record["score"] = m[config.metric]
    if warning:
        record["collapsed"] = True
        log.warning("epoch %d: %s", epoch, warning)
        loop.runlog.write("warning", epoch=epoch, message=warning)
    improved = judge_epoch(state, score, epoch)
    log.info(
        "%s: loss %.4f, dev %s %.4f (threshold %.2f)%s, %.0fs",
        where,
        record["train_loss"],
        config.metric,
        score,
        record["dev_threshold"],
        " best" if improved else "",
        record["seconds"],
    )
    return improved, probs


def judge_epoch(state: TrainState, score: float, epoch: int) -> bool:
    """Keep `epoch` as the best in `state` if its dev `score` beats the best so far -> whether it did."""
    improved = state.best_score is None or score > state.best_score + 1e-9
    if improved:
        state.best_score, state.best_epoch, state.best_step, state.bad_epochs = score, epoch, state.global_step, 0
    else:
        state.bad_epochs += 1
    return improved


def stop_reason(
    state: TrainState, config: TrainConfig, epochs: int, has_dev: bool, pacer: Pacer | None = None
) -> str | None:
    """Why training stops before its last planned epoch (patience spent, max_steps or the time budget's
    planned step reached), else None."""
    if state.epoch >= epochs:
        return None
    if has_dev and config.patience and state.bad_epochs >= config.patience:
        unit = "evaluation(s)" if config.eval_steps or (pacer is not None and pacer.budget_s) else "epoch(s)"
        return f"stopping early: dev {config.metric} has not improved for {config.patience} {unit}"
    if pacer is not None and pacer.budget_s and state.global_step >= pacer.total_steps:
        return f"stopping: the time budget's planned step {pacer.total_steps} is reached"
    if config.max_steps and state.global_step >= config.max_steps:
        return f"stopping: reached max_steps {config.max_steps}"
    return None


# epochs=0 (auto): about this many optimizer steps. Chosen on dev: GoEmotions (43k texts) peaks
# within 4 epochs = 10.9k steps at batch 16; Reuters (7.0k) still gains at 20 epochs = 8.8k steps.
AUTO_EPOCH_STEPS = 10_000
MAX_AUTO_EPOCHS = 20


def planned_epochs(requested: int, steps_per_epoch: int) -> int:
    """The epochs to run: `requested`, or for 0 enough for AUTO_EPOCH_STEPS steps, clipped to 1..MAX_AUTO_EPOCHS."""
    if requested:
        return requested
    return max(1, min(MAX_AUTO_EPOCHS, math.ceil(AUTO_EPOCH_STEPS / max(steps_per_epoch, 1))))


def hold_encoder(optimizer: torch.optim.Optimizer, hold: bool) -> None:
    """While `hold`, the encoder's learning rates are 0 (the schedule sets them afresh each step)."""
    if hold:
        for group in optimizer.param_groups:
            if not group.get("is_head", True):
                group["lr"] = 0.0


def _restore(
    ckpt_dir: Path | None,
    config: TrainConfig,
    fingerprint: str,
    model: MultiLabelModel,
    optimizer: torch.optim.Optimizer,
    scheduler,
    world: int = 1,
) -> tuple[TrainState, dict[str, torch.Tensor] | None]:
    """Load the interrupted run's weights, optimizer, schedule and RNG; refuse a run that differs."""
    found = read_checkpoint(ckpt_dir / "last") if ckpt_dir is not None else None
    if found is None:
        raise ConfigError(f"--resume: no checkpoint under {ckpt_dir}; start without --resume")
    weights, state, opt_state = found
    if state.get("world_size", 1) != world:
        raise ConfigError(
            f"--resume: the interrupted run used {state.get('world_size', 1)} process(es), this one "
            f"{world}; resume with the same number (each process's place in the epoch depends on it)"
        )
    saved = TrainConfig.from_dict(state["config"])
    if saved != config:
        diff = [k for k, v in config.to_dict().items() if saved.to_dict().get(k) != v]
        raise ConfigError(
            f"--resume: settings differ from the interrupted run ({', '.join(diff)}); "
            "resume with the same settings, or start a new run in another --out folder"
        )
    if state["fingerprint"] != fingerprint:
        raise ConfigError(
            "--resume: the training data differ from the interrupted run's; "
            "resume with the same --train file and settings"
        )
    model.load_state_dict(weights)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state["optimizer"])
        scheduler.load_state_dict(opt_state["scheduler"])
        restore_rng(opt_state)
    best = read_checkpoint(ckpt_dir / "best", with_optimizer=False)
    return TrainState.from_dict(state), (best[0] if best is not None else None)


def _score_dev(
    model: MultiLabelModel,
    dev: tuple[Encoded, np.ndarray],
    config: TrainConfig,
    device: torch.device,
    columns: slice = slice(None),
) -> tuple[dict[str, Any], dict[str, Any], str | None, np.ndarray]:
    """Dev scores of one epoch -> (history fields, metrics, collapse warning or None, the probabilities of the
    outputs `columns`, which dev's targets are for)."""
    dev_enc, dev_y = dev
    # Each process scores a share of dev; all get every row, so every process takes the same decisions.
    probs = predict_proba_all(model, dev_enc, config.eval_batch_size, device=device)[:, columns]
    # Select epochs on the tuned global cut-off: early epochs are under-confident, and a fixed
    # 0.5 would judge their calibration rather than their ranking.
    cut, _ = tune_global_threshold(probs, dev_y)
    m = compute_metrics(probs, dev_y, cut)
    fields = {
        "dev_threshold": cut,
        **{
            f"dev_{k}": m[k] for k in ("micro_f1", "macro_f1", "samples_f1", "micro_roc_auc", "macro_roc_auc", "p_at_1")
        },
        "dev_loss": float(
            bce_loss(torch.logit(torch.from_numpy(probs).clamp(1e-7, 1 - 1e-7)), torch.from_numpy(dev_y))
        ),
    }
    return fields, m, collapse_warning(probs, dev_y, m["macro_f1"]), probs
