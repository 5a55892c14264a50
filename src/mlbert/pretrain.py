"""`mlbert pretrain`: continued masked-language-model training on the user's unlabelled text.

The [MASK] mechanism taught the encoder language from context; continuing it on in-domain text
adapts the encoder to the user's vocabulary and style before any label is seen. Masking is
transformers' DataCollatorForLanguageModeling (15 % of tokens chosen; of those 80 % [MASK], 10 % a
random token, 10 % kept; optionally whole words). The packaged MiniLM ships no MLM head: a fresh one
is initialised (its output layer tied to the word embeddings, as BERT's is), which is why the first
steps' loss is high. The result is a Hugging Face folder that `mlbert train --model DIR` accepts.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .batching import rank_batches, show_progress
from .checkpoint import (
    CHECKPOINTS,
    abandon_run_dir,
    prepare_run_dir,
    read_checkpoint,
    restore_rng,
    rng_state,
    state_dict_cpu,
    write_checkpoint,
)
from .config import PretrainConfig
from .data import read_dataset
from .distributed import use_cpu
from .encoders import encoder_config, load_tokenizer, quiet_transformers, resolve_encoder
from .errors import ConfigError, DataError
from .fileio import write_json
from .train import adamw

log = logging.getLogger("mlbert")
RESULT_FILE = "pretrain.json"
MAX_DEV_TEXTS = 2000


def read_texts(paths: list[str | Path], text_field: str = "text") -> list[str]:
    """Texts of .txt (one a line), .jsonl, .csv/.tsv or .parquet files; labels, if any, are ignored."""
    texts: list[str] = []
    for path in paths:
        texts += read_dataset(path, text_field=text_field, require_labels=False).texts
    return texts


def _tokenize(tokenizer, texts: list[str], max_length: int, offsets: bool) -> list[dict[str, Any]]:
    out = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        return_special_tokens_mask=True,
        return_offsets_mapping=offsets,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    keys = ["input_ids", "special_tokens_mask"] + (["offset_mapping"] if offsets else [])
    return [{k: out[k][i] for k in keys} for i in range(len(texts))]


def _collator(tokenizer, config: PretrainConfig, seed: int):
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=config.mlm_probability, whole_word_mask=config.whole_word_mask, seed=seed
    )


@torch.inference_mode()
def perplexity(
    model, tokenizer, examples: list[dict[str, Any]], config: PretrainConfig, device: torch.device | str | None = None
) -> float:
    """exp(mean loss over masked tokens) with the same masks every call (a fixed seed), so numbers
    before and after training compare like for like."""
    collate = _collator(tokenizer, config, seed=config.seed + 1)
    device = device if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, len(examples), 64):
            batch = {k: v.to(device) for k, v in collate(examples[start : start + 64]).items()}
            n = int((batch["labels"] != -100).sum())
            if n:
                total += float(model(**batch).loss) * n
                count += n
    finally:
        model.train(was_training)
    return math.exp(total / count) if count else float("nan")


def pretrain(
    texts: list[str],
    out: str | Path,
    config: PretrainConfig,
    dev_texts: list[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Continue MLM training of `config.model` on `texts`; write a model folder to `out` -> the summary."""
    out = Path(out)
    if not texts:
        raise DataError("no texts to pretrain on")
    existed = out.exists()
    prepare_run_dir(out, resume, overwrite, markers=(CHECKPOINTS, RESULT_FILE), finished=(RESULT_FILE,), whole=True)
    try:
        return _pretrain(texts, out, config, dev_texts, resume, progress)
    except BaseException:  # failed before its first checkpoint: leave no half-made folder
        abandon_run_dir(out, (CHECKPOINTS,), existed)
        raise


def _pretrain(
    texts: list[str], out: Path, config: PretrainConfig, dev_texts: list[str] | None, resume: bool, progress: bool
) -> dict[str, Any]:
    # Imported here: Accelerate and transformers' model classes cost about a second of start-up that the
    # other commands would pay for nothing.
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import AutoModelForMaskedLM, get_linear_schedule_with_warmup

    started = time.perf_counter()
    set_seed(config.seed)
    path = resolve_encoder(config.model)
    tokenizer = load_tokenizer(path)
    if tokenizer.mask_token is None:
        raise ConfigError(f"{config.model}: the tokenizer has no [MASK] token, so it cannot be trained as a masked LM")
    quiet_transformers()
    # encoder_config: an mlbert model folder (config.json model_type mlbert) keeps the encoder's under `encoder`.
    model, info = AutoModelForMaskedLM.from_pretrained(path, config=encoder_config(path), output_loading_info=True)
    fresh_head = sorted(
        {
            k.split(".")[0] + "." + k.split(".")[1]
            for k in info.get("missing_keys", [])
            if not k.startswith(model.base_model_prefix)
        }
    )
    if fresh_head:
        log.info("initialised a new MLM head (%s): %s ships none", ", ".join(fresh_head), config.model)

    if dev_texts is None:  # hold out a share of the texts for perplexity
        order = np.random.default_rng(config.seed).permutation(len(texts))
        n_dev = min(MAX_DEV_TEXTS, round(config.dev_share * len(texts)))
        dev_texts = [texts[i] for i in order[:n_dev]]
        texts = [texts[i] for i in np.sort(order[n_dev:])]
    train = _tokenize(tokenizer, texts, config.max_length, config.whole_word_mask)
    dev = _tokenize(tokenizer, dev_texts, config.max_length, config.whole_word_mask) if dev_texts else []
    log.info("pretrain: %d texts, dev %d", len(train), len(dev))

    accelerator = Accelerator(cpu=use_cpu())
    model.to(accelerator.device)  # before the optimizer and the perplexity check, which run there too
    rank, world = accelerator.process_index, accelerator.num_processes
    lengths = np.array([len(e["input_ids"]) for e in train])
    n_batches = len(rank_batches(lengths, config.batch_size, config.seed, 0, rank, world))
    total = n_batches * config.epochs if not config.max_steps else min(config.max_steps, n_batches * config.epochs)
    prefix = model.base_model_prefix + "."
    head = [p for name, p in model.named_parameters() if not name.startswith(prefix)]
    body = [p for name, p in model.named_parameters() if name.startswith(prefix)]
    optimizer = adamw(
        [{"params": body, "lr": config.lr}, {"params": head, "lr": config.head_lr}], weight_decay=config.weight_decay
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total), max(total, 1))
    ckpt = out / CHECKPOINTS / "last"
    state: dict[str, Any] = {"epoch": 0, "batches_done": 0, "step": 0, "world_size": world}
    before = None
    if resume:
        found = read_checkpoint(ckpt)
        if found is None:
            raise ConfigError(f"--resume: no checkpoint under {ckpt}; start without --resume")
        weights, state, opt_state = found
        if state.get("world_size", 1) != world or state.get("config") != dataclasses.asdict(config):
            raise ConfigError("--resume: the settings or the number of processes differ from the interrupted run")
        model.load_state_dict(weights)
        optimizer.load_state_dict(opt_state["optimizer"])
        scheduler.load_state_dict(opt_state["scheduler"])
        restore_rng(opt_state)  # dropout continues where the lost run was
        before = state.get("perplexity_before")
    if before is None:
        before = perplexity(model, tokenizer, dev, config) if dev else None
        if before is not None:
            log.info("dev perplexity before: %.2f", before)
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)

    def save_checkpoint() -> None:
        if accelerator.is_main_process:
            write_checkpoint(
                ckpt,
                state_dict_cpu(raw),
                {**state, "config": dataclasses.asdict(config), "perplexity_before": before},
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **rng_state()},
            )

    model.train()
    while state["epoch"] < config.epochs and not (config.max_steps and state["step"] >= config.max_steps):
        batches = rank_batches(lengths, config.batch_size, config.seed, state["epoch"], rank, world)
        # One seeded masking stream per epoch, so a resumed run masks what the lost one would have.
        collate = _collator(tokenizer, config, seed=config.seed * 1000 + state["epoch"] * 10 + rank)
        for i in range(state["batches_done"]):
            collate([train[j] for j in batches[i]])  # replay the masks already drawn this epoch
        bar = tqdm(
            total=len(batches),
            initial=state["batches_done"],
            desc=f"pretrain {state['epoch'] + 1}",
            unit="batch",
            disable=not show_progress(progress) or not accelerator.is_main_process,
            leave=False,
        )
        for i in range(state["batches_done"], len(batches)):
            batch = {k: v.to(accelerator.device) for k, v in collate([train[j] for j in batches[i]]).items()}
            loss = model(**batch).loss
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["batches_done"] = i + 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if config.save_steps and state["step"] % config.save_steps == 0:
                save_checkpoint()
            if config.max_steps and state["step"] >= config.max_steps:
                break
        bar.close()
        if state["batches_done"] >= len(batches):
            state["epoch"], state["batches_done"] = state["epoch"] + 1, 0
        save_checkpoint()

    after = perplexity(raw, tokenizer, dev, config, accelerator.device) if dev else None
    summary = {
        "config": dataclasses.asdict(config),
        "n_texts": len(train),
        "n_dev_texts": len(dev),
        "steps": state["step"],
        "perplexity_before": before,
        "perplexity_after": after,
        "seconds": round(time.perf_counter() - started, 1),
        "fresh_mlm_head": fresh_head,
    }
    if accelerator.is_main_process:
        raw.save_pretrained(out)
        tokenizer.save_pretrained(out)
        write_json(out / RESULT_FILE, summary)  # last: a folder without it is not finished
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    if before is not None:
        log.info("dev perplexity %.2f -> %.2f", before, after)
    return summary
