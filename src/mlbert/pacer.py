"""When a training run stops and scores dev: a fixed plan (epochs, max_steps, eval_steps) or, with a
`time_budget`, a plan made from the run's own measured speed (the arithmetic is budget.py's) and corrected
at each evaluation. Without a budget it still times the first steps, to say how long the run will take.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .batching import Encoded, inference_batches, take_rows
from .budget import (
    EVAL_SHARE,
    FILL,
    MIN_EVAL_TEXTS,
    MIN_EVALS,
    MIN_THRESHOLD_TEXTS,
    THRESHOLD_SHARE,
    Plan,
    estimate_run_s,
    format_duration,
    mean_step_s,
    parse_duration,
    plan_steps,
    sample_size,
)
from .config import AUTO_FREEZE_EPOCHS, AUTO_SHORTEN_EPOCHS, TrainConfig
from .predict import predict_proba

log = logging.getLogger("mlbert")

# A budgeted run times this many optimizer steps (after the first, which pays one-off costs) before it plans.
PROBE_STEPS = 8
REPLANS = 10  # a budgeted run corrects its plan about this many times, besides after each evaluation
INFERENCE_PROBE_TEXTS = 256  # predicted once to time inference (windows, for texts read in windows)
# Timed again half-way through the plan when no evaluation has timed it since: on a 2 vCPU AMD EPYC the probe
# priced reuters_long's inference at 0.23 s a text and scoring took 0.32-0.37 s a text from mid-run on, so a
# plan with one evaluation (at its end) ran 10 % over its budget.
INFERENCE_RECHECK_TEXTS = 64
MIN_TIMED_TEXTS = 16  # long texts read in windows: at least this many texts are timed
# Writing the model folder, the card and metrics.json: a second, and the weights at a (slow) 200 MB/s.
SAVE_BASE_S, SAVE_BYTES_PER_S = 1.0, 200e6
# A budget whose first plan has fewer optimizer steps than this (and under an epoch) is said to be too small,
# with the budget that buys an epoch. Measured on a 2 vCPU AMD EPYC: Reuters at 5 min with the cores shared
# planned 25 steps and collapsed to the label base rates (test macro-F1 0.04); alone it did 210 steps and
# reached 0.83 / 0.30, and 610 steps of GoEmotions (5 min) reached 0.58 / 0.43.
MIN_USEFUL_STEPS = 100


class Pacer:
    """Where the run stops and when it scores dev (see the module's docstring). The run's `state` in every
    method is train.TrainState (global_step, planned_steps, planned_eval_every); not imported, as train.py
    imports this module."""

    def __init__(
        self,
        config: TrainConfig,
        total_steps: int,
        steps_per_epoch: int,
        accelerator: Any,
        step_tokens: float = 1.0,
        cached_from: int | None = None,
    ):
        """`step_tokens`: the mean padded tokens of an optimizer step over an epoch's batches. A step costs
        about its padded tokens, and batches of texts of very different lengths come in random order, so
        the probe's steps are timed per token and priced at the mean, not taken as typical.
        `cached_from`: with cached frozen layers (layer_cache.py), the step from which steps read only the
        cache; those are timed apart and priced at their own (lower) rate once measured."""
        self.config, self.accelerator = config, accelerator
        self.step_tokens = step_tokens
        self.budget_s = parse_duration(config.time_budget) if config.time_budget else 0.0
        self.max_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.total_steps = total_steps
        self.eval_every = config.eval_steps  # 0: at each epoch's end
        self.plan: Plan | None = None
        self.estimate_s: float | None = None
        self.train_s = 0.0  # seconds in optimizer steps since the probe began
        self.timed_steps = 0
        self.timed_tokens = 0.0  # their padded tokens
        self.tokens = 0.0  # the step in progress's padded tokens
        self.cached_from = cached_from
        self.cached = False  # whether the step in progress reads only cached states
        self.cached_s, self.cached_steps, self.cached_tokens = 0.0, 0, 0.0  # those steps, timed apart
        self.eval_s: float | None = None  # the last evaluation's seconds
        self.frozen = False  # a resumed budgeted run keeps the plan it had
        self.runlog: Any = None  # train.RunLog, set by the loop
        self.clock = time.perf_counter  # a test may give it a fake one
        # What the run brings (start) and what the probe measures (stepped); set there.
        self.run_started, self.has_dev = 0.0, False
        self.dev_texts = self.eval_texts = self.after_texts = self.threshold_texts = 0
        self.dev_sample: tuple[Encoded, np.ndarray] | None = None
        self.step_started: float | None = None
        self.predict_text_s = self.save_s = 0.0  # seconds per predicted text; seconds to save the folder
        self.replan_every = PROBE_STEPS
        self.first_plan: dict[str, Any] | None = None
        self.retimed: dict[str, Any] | None = None  # the half-way timing of inference, when there was one
        # freeze_layers "auto" under a budget: set by the loop; called (once) with the state when the probe finds
        # the budget buys fewer than AUTO_FREEZE_EPOCHS epochs -> the layers it froze. `froze` records it.
        self.freeze: Callable[[Any], int] | None = None
        self.froze: dict[str, Any] | None = None
        # max_length "auto" under a budget: set by the loop; called (once) with the state when the plan, after the
        # freezing decision, covers fewer than AUTO_SHORTEN_EPOCHS epochs -> the length the texts were cut to
        # (0: not cut). `cut` records it.
        self.shorten: Callable[[Any], int] | None = None
        self.cut: dict[str, Any] | None = None
        self.too_short: str | None = None  # the warning of a budget that buys too few steps (first plan)

    def lr_factor(self, step: int) -> float:
        """Linear warm-up, then linear decay to 0 at the (planned) last step: transformers'
        get_linear_schedule_with_warmup, with a last step that a budget may move."""
        warmup = round(self.config.warmup_ratio * self.total_steps)
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - warmup))

    def start(self, run_started: float, dev, after_texts: int, threshold_texts: int, state: Any) -> None:
        self.run_started, self.has_dev = run_started, dev is not None
        self.dev_texts = len(dev[0]) if dev is not None else 0
        self.eval_texts = self.dev_texts  # a budget may score a sample of dev during training
        self.after_texts, self.threshold_texts = after_texts, threshold_texts
        if self.budget_s and state.planned_steps:
            self.total_steps, self.frozen = state.planned_steps, True
            self.eval_every = self.eval_every or state.planned_eval_every
            log.info("time budget: continuing the interrupted run's plan of %d steps", state.planned_steps)
        if self.budget_s:
            log.info(
                "time budget %s: planning the run after its first %d steps", format_duration(self.budget_s), PROBE_STEPS
            )

    def step_begins(self, tokens: float = 1.0, cached: bool = False) -> None:
        """An optimizer step starts; it will read `tokens` padded tokens (only from the layer cache: `cached`).
        Cached steps are timed apart only where steps change cost on the way (`cached_from`); a cache filled
        before the first step makes every step one kind."""
        self.step_started, self.tokens = self.clock(), tokens
        self.cached = cached and self.cached_from is not None

    def stepped(self, state: Any, model: torch.nn.Module, train: tuple[Encoded, np.ndarray]) -> None:
        """After each optimizer step: time it; after the probe, plan (budget) or estimate (no budget)."""
        if state.global_step > 1 and self.step_started is not None and self.cached:
            self.cached_s += self.clock() - self.step_started
            self.cached_steps += 1
            self.cached_tokens += self.tokens
        elif state.global_step > 1 and self.step_started is not None:  # step 1 pays one-off costs
            self.train_s += self.clock() - self.step_started
            self.timed_steps += 1
            self.timed_tokens += self.tokens
        if self.plan is not None and not self.frozen and state.global_step < self.total_steps:
            # Between evaluations too: a plan made from the first steps alone can be far off.
            if self._retime_due(state):
                self._retime_inference(state, model, train[0])
                self._replan(state)
            elif state.global_step % self.replan_every == 0:
                self._replan(state)
            return
        if self.timed_steps == PROBE_STEPS and not self.frozen and (self.plan is None and self.estimate_s is None):
            self.predict_text_s = self._time_inference(model, train[0])
            self.save_s = SAVE_BASE_S + sum(p.numel() * p.element_size() for p in model.parameters()) / SAVE_BYTES_PER_S
            if self.freeze is not None and self._freeze_pays(state):
                return  # the steps change cost: the next PROBE_STEPS steps are timed again before the plan
            if self.shorten is not None and self.budget_s and self._shorten_pays(state):
                return  # so do they when the texts are cut
            if self.budget_s:
                self.eval_texts = sample_size(self.dev_texts, self.budget_s, EVAL_SHARE, self.predict_text_s,
                                              MIN_EVAL_TEXTS)  # fmt: skip
                self.threshold_texts = sample_size(self.threshold_texts, self.budget_s, THRESHOLD_SHARE,
                                                   self.predict_text_s, MIN_THRESHOLD_TEXTS)  # fmt: skip
            self._replan(state)

    def _freeze_pays(self, state: Any) -> bool:
        """freeze_layers "auto": whether to freeze, from the plan these probe steps (every layer training) give;
        if so the loop freezes now, and the timing starts over for the cheaper steps."""
        epochs, covered = self._probe_epochs(state)
        freeze, self.freeze = self.freeze, None
        self.froze = {"layers": 0, "step": state.global_step, "epochs_planned_unfrozen": round(epochs, 2)}
        if epochs >= AUTO_FREEZE_EPOCHS or covered:
            log.info("time budget: %.1f epochs with every layer training; no layer frozen", epochs)
            return False
        layers = self.froze["layers"] = freeze(state)
        if layers:
            log.info("time budget: %.1f epochs with every layer training; the embeddings and %d layers are frozen "
                     "from here", epochs, layers)  # fmt: skip
            self._restart_probe()
        return bool(layers)

    def _shorten_pays(self, state: Any) -> bool:
        """max_length "auto": whether to cut the texts, from the plan these probe steps give (after the freezing
        decision); if so the loop cuts them now, and the timing starts over."""
        epochs, covered = self._probe_epochs(state)
        shorten, self.shorten = self.shorten, None
        self.cut = {"max_length": 0, "step": state.global_step, "epochs_planned_uncut": round(epochs, 2)}
        if epochs >= AUTO_SHORTEN_EPOCHS or covered:
            log.info("time budget: %.1f epochs at these text lengths; texts not cut", epochs)
            return False
        length = self.cut["max_length"] = shorten(state)
        if length:
            log.info("time budget: %.2f epochs at these text lengths; texts cut to %d tokens from here", epochs, length)
            self._restart_probe()
        return bool(length)

    def _probe_epochs(self, state: Any) -> tuple[float, bool]:
        """(epochs the plan from the steps timed so far covers, whether it reaches the run's own last step)."""
        fresh_s, _, eval_s, after_s = self._rates()
        plan = self._plan(self.clock() - self.run_started, fresh_s, eval_s, after_s, state)
        return plan.total_steps / max(1, self.steps_per_epoch), plan.total_steps >= self.max_steps

    def _restart_probe(self) -> None:
        """The steps changed cost (layers frozen, texts cut): the next PROBE_STEPS steps are timed afresh."""
        self.train_s, self.timed_steps, self.timed_tokens = 0.0, 0, 0.0

    def samples_dev(self) -> bool:
        """Whether evaluations during training score a sample of dev (a budget's choice), not all of it."""
        return self.eval_texts < self.dev_texts

    def scored_dev(self, dev: tuple[Encoded, np.ndarray] | None) -> tuple[Encoded, np.ndarray] | None:
        """What each evaluation during training scores: dev, or under a budget a seeded sample of it, the same
        every time so that evaluations compare."""
        if dev is None or not self.samples_dev():
            return dev
        if self.dev_sample is None:
            rows = np.sort(np.random.default_rng(self.config.seed).choice(len(dev[0]), self.eval_texts, replace=False))
            self.dev_sample = (take_rows(dev[0], rows), dev[1][rows])
            log.info("time budget: dev scored on %d of its %d texts during training", self.eval_texts, len(dev[0]))
        return self.dev_sample

    def _time_inference(self, model: torch.nn.Module, encoded, n_texts: int = INFERENCE_PROBE_TEXTS) -> float:
        """Seconds per text at inference: a seeded sample of training texts predicted the way dev and test
        will be (length-sorted batches), timed per padded token and priced at the mean text's tokens: a small
        sample is one batch padded to its longest text, which thousands of length-sorted texts are not (on a
        2 vCPU AMD EPYC 64 Reuters texts timed per text priced inference 60 % high). Texts read in windows
        count by their windows (`n_texts` windows' worth of texts, at least MIN_TIMED_TEXTS): 256
        reuters_long documents are 1,250 windows, a minute of a 20-minute budget on 2 cores."""
        n = len(encoded)
        if getattr(encoded, "starts", None) is not None:
            n_texts = max(MIN_TIMED_TEXTS, round(n_texts * n / max(1, len(encoded.input_ids))))
        rows = np.sort(np.random.default_rng(self.config.seed).choice(n, min(n, n_texts), replace=False))
        sample = take_rows(encoded, rows)
        was_training = model.training
        t0 = self.clock()
        predict_proba(model, sample, self.config.eval_batch_size, device=self.accelerator.device)
        seconds = self.clock() - t0
        model.train(was_training)
        lengths = sample.window_texts().lengths if sample.starts is not None else sample.lengths
        padded = sum(len(b) * int(lengths[b].max()) for b in inference_batches(lengths, self.config.eval_batch_size))
        return seconds / max(1, padded) * float(np.mean(encoded.lengths))

    def _retime_due(self, state: Any) -> bool:
        """Half-way through a budget's plan, when no evaluation has timed inference since the probe: what is
        left to predict after training (dev, the threshold sample, test) is priced from the probe alone."""
        return (
            bool(self.budget_s)
            and self.retimed is None
            and self.eval_s is None
            and (state.global_step >= self.total_steps // 2)
        )

    def _retime_inference(self, state: Any, model: torch.nn.Module, encoded) -> None:
        before = self.predict_text_s
        # The slower of the two: an overrun costs the budget's promise, an underrun only a few steps.
        self.predict_text_s = max(before, self._time_inference(model, encoded, INFERENCE_RECHECK_TEXTS))
        self.retimed = {"step": state.global_step, "seconds_per_text": round(self.predict_text_s, 5),
                        "probe_seconds_per_text": round(before, 5)}  # fmt: skip
        if self.runlog is not None:
            self.runlog.write("retime", **self.retimed)
        log.info("time budget: inference re-timed at step %d: %.3f s a text (the probe: %.3f)", state.global_step,
                 self.predict_text_s, before)  # fmt: skip

    def _rates(self) -> tuple[float, float, float, float]:
        """(seconds per step, per step that reads the layer cache, per dev evaluation, after training), the same
        in every process. A cached step is priced as an uncached one until PROBE_STEPS of them are timed."""
        step_s = self.train_s / max(1e-9, self.timed_tokens) * self.step_tokens
        cached_s = step_s
        if self.cached_steps >= PROBE_STEPS:
            cached_s = self.cached_s / max(1e-9, self.cached_tokens) * self.step_tokens
        eval_s = self.eval_s if self.eval_s is not None else self.eval_texts * self.predict_text_s * 1.1
        # dev is scored again after training only where the evaluations scored a sample of it (train.TrainResult)
        rescored = self.dev_texts if self.samples_dev() else 0
        predicted_after = rescored + self.after_texts + self.threshold_texts
        after_s = predicted_after * self.predict_text_s * 1.1 + self.save_s
        values = torch.tensor([step_s, cached_s, eval_s, after_s], dtype=torch.float64, device=self.accelerator.device)
        if self.accelerator.num_processes > 1:  # every process must make the same plan
            values = self.accelerator.reduce(values, reduction="mean")
        return tuple(float(v) for v in values)  # type: ignore[return-value]

    def _plan(self, elapsed: float, step_s: float, eval_s: float, after_s: float, state: Any) -> Plan:
        """budget.plan_steps for the time left after `elapsed` seconds, at `step_s` a step from this step on."""
        return plan_steps(self.budget_s - elapsed, step_s, eval_s if self.has_dev else 0.0, after_s,
                          state.global_step, self.steps_per_epoch, self.max_steps)  # fmt: skip

    def _replan(self, state: Any) -> None:
        fresh_s, cached_s, eval_s, after_s = self._rates()
        step_s = fresh_s
        fresh_left = self.max_steps
        if self.cached_from is not None:
            fresh_left = self.cached_from - state.global_step
            step_s = mean_step_s(fresh_s, cached_s, fresh_left, self.max_steps - state.global_step)
        elapsed = self.clock() - self.run_started
        if not self.budget_s:
            evals_left = self.max_steps // self.eval_every if self.eval_every else 0
            evals_left = evals_left or math.ceil((self.max_steps - state.global_step) / max(1, self.steps_per_epoch))
            steps_left = self.max_steps - state.global_step
            self.estimate_s = estimate_run_s(elapsed, step_s, steps_left, eval_s if self.has_dev else 0.0,
                                             evals_left, after_s)  # fmt: skip
            if self.runlog is not None:
                self.runlog.write("estimate", step=state.global_step, estimate_s=round(self.estimate_s, 1))
            log.info(
                "this run will take about %s on this machine (%d steps at %.2f s); --time-budget caps it",
                format_duration(self.estimate_s),
                self.max_steps,
                step_s,
            )
            return
        plan = self._plan(elapsed, fresh_s, eval_s, after_s, state)
        for _ in range(3 if cached_s < fresh_s else 0):  # steps that read the cache cost less: fit more
            step_s = mean_step_s(fresh_s, cached_s, fresh_left, plan.total_steps - state.global_step)
            plan = self._plan(elapsed, step_s, eval_s, after_s, state)
        first = self.plan is None
        if first:
            self.eval_every = self.config.eval_steps or plan.eval_every
            self.replan_every = max(PROBE_STEPS, plan.total_steps // REPLANS)
        # Later plans move the last step only: evaluations stay evenly spaced, at the first plan's interval.
        plan = dataclasses.replace(plan, eval_every=self.eval_every)
        self.plan, self.total_steps = plan, plan.total_steps
        state.planned_steps, state.planned_eval_every = plan.total_steps, self.eval_every
        if self.runlog is not None:
            cached = {"seconds_per_cached_step": cached_s} if self.cached_from is not None else {}
            self.runlog.write("plan", step=state.global_step, elapsed_s=round(elapsed, 1), seconds_per_step=step_s,
                              seconds_per_eval=eval_s, **cached, **plan.to_dict())  # fmt: skip
        if first:
            self.first_plan = plan.to_dict()
            self.too_short = self._too_short(plan, elapsed, step_s, eval_s, after_s)
            if self.too_short:
                log.warning("%s", self.too_short)
            log.info(
                "time budget: %d optimizer steps (%.1f epochs) at %.2f s each, dev scored every %d steps; "
                "%s for training, %s for scoring, thresholds and saving",
                plan.total_steps,
                plan.total_steps / max(1, self.steps_per_epoch),
                step_s,
                self.eval_every,
                format_duration(plan.train_s + plan.eval_s),
                format_duration(plan.after_s),
            )

    def _too_short(self, plan: Plan, elapsed: float, step_s: float, eval_s: float, after_s: float) -> str | None:
        """The warning for a budget that leaves training fewer than MIN_USEFUL_STEPS steps (and under an epoch),
        with what would buy one epoch on this machine; else None."""
        if plan.total_steps >= min(MIN_USEFUL_STEPS, self.steps_per_epoch, self.max_steps):
            return None
        epoch_s = estimate_run_s(elapsed, step_s, self.steps_per_epoch, eval_s if self.has_dev else 0.0, MIN_EVALS,
                                 after_s) / FILL  # fmt: skip
        return (
            f"the time budget {format_duration(self.budget_s)} leaves {plan.total_steps} optimizer steps "
            f"({plan.total_steps / max(1, self.steps_per_epoch):.2f} epochs) once tokenizing, dev scoring and the "
            f"{format_duration(plan.after_s)} for scoring, thresholds and saving are set aside: too few to learn "
            f"much, the model may predict little. About --time-budget {math.ceil(epoch_s / 60)}m buys one epoch "
            "on this machine"
        )

    def pause(self, state: Any) -> bool:
        """Stop the epoch here (after an optimizer step): time to score dev, or the last step."""
        if state.global_step >= self.total_steps:
            return True
        return bool(self.eval_every and self.has_dev and state.global_step % self.eval_every == 0)

    def evaluated(self, state: Any, seconds: float) -> None:
        """After each scoring of dev: correct the plan with what the run has measured so far."""
        if self.has_dev:
            self.eval_s = seconds
            if self.eval_texts:  # a whole evaluation times inference better than the probe did
                self.predict_text_s = seconds / self.eval_texts
        if self.budget_s and self.plan is not None and not self.frozen and state.global_step < self.total_steps:
            self._replan(state)

    def summary(self, state: Any) -> dict[str, Any]:
        """What metrics.json says about the plan: planned against done."""
        out: dict[str, Any] = {"steps_done": state.global_step}
        if self.budget_s:
            out.update(
                budget_s=self.budget_s,
                dev_texts_scored_in_training=self.eval_texts,
                threshold_train_texts=self.threshold_texts,
                planned_steps=self.total_steps,
                eval_every=self.eval_every,
                seconds_per_step=round(self.train_s / max(1, self.timed_steps), 4),
                seconds_per_step_planned=round(self.train_s / max(1e-9, self.timed_tokens) * self.step_tokens, 4),
                first_plan=self.first_plan,
                **({"froze": self.froze} if self.froze is not None else {}),
                **({"cut": self.cut} if self.cut is not None else {}),
                **({"inference_retimed": self.retimed} if self.retimed is not None else {}),
                **(
                    {"seconds_per_cached_step": round(self.cached_s / max(1, self.cached_steps), 4)}
                    if self.cached_from is not None
                    else {}
                ),
                last_plan=self.plan.to_dict() if self.plan is not None else None,
            )
        if self.estimate_s is not None:
            out["estimate_s"] = round(self.estimate_s, 1)
        return out
