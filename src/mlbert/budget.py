"""`--time-budget`: durations, and the plan that makes a training run end, model saved, within its budget.

A budgeted run measures itself (seconds per optimizer step over its first steps, seconds per dev
evaluation) and plans how many steps fit in the time left after everything that follows training
(threshold tuning, scoring, saving). The learning-rate schedule is stretched to end at the planned
step, so the run finishes on a low learning rate instead of being cut off at a high one, and dev is
scored several times on the way so the best state is kept. Pure arithmetic: train.py feeds it clocks.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smh])")


def parse_duration(text: str | float | int) -> float:
    """'90s', '20m', '1h', '1h30m' or a number of seconds -> seconds; anything else raises ConfigError."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        s = str(text).strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", s):
            seconds = float(s)
        elif s and re.fullmatch(rf"(?:{_DURATION.pattern}\s*)+", s):
            seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(s))
        else:
            raise ConfigError(f"time_budget {text!r} is not a duration; write e.g. 90s, 20m, 1h or 1h30m")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"time_budget must be a positive duration, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """5h 20min, 12min, 45s: what a person reads at the start of a run."""
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {round(seconds % 3600 / 60)} min"
    if seconds >= 90:
        return f"{round(seconds / 60)} min"
    return f"{seconds} s"


# Evaluations per budgeted run: one per epoch as without a budget, but at least MIN_EVALS (to keep a good
# state when the run is shorter than an epoch, and to correct the plan on the way), and at most
# MAX_EVAL_SHARE of the time left, so that a large dev set does not eat the training.
MIN_EVALS = 4
MAX_EVAL_SHARE = 0.1
# Margins against noise in the measured rates: the plan fills this share of the time left, less a few seconds.
FILL = 0.95
SLACK_S = 3.0


# What a budget spends on predictions besides training: each dev evaluation during training reads a sample
# of dev costing at most EVAL_SHARE of the budget, and the training sample the thresholds are tuned on
# (threshold_data train+dev) at most THRESHOLD_SHARE; never fewer texts than the floors.
EVAL_SHARE, MIN_EVAL_TEXTS = 0.025, 500
THRESHOLD_SHARE, MIN_THRESHOLD_TEXTS = 0.08, 2000


def sample_size(available: int, budget_s: float, share: float, text_s: float, floor: int) -> int:
    """How many of `available` texts to predict so that it costs about `share` of `budget_s` at `text_s`
    seconds a text (at least `floor`, at most all). The floor gives way where it alone would cost more than
    twice the share: texts read whole in many windows can cost 50 times a short text's time, and a floor
    counted in texts would then eat the budget (reuters_long, read in chunks: 0.14 s a document)."""
    affordable = share * budget_s / max(text_s, 1e-9)
    return min(available, max(min(floor, int(2 * affordable)), int(affordable)))


@dataclass(frozen=True)
class Plan:
    """Where a budgeted run will stop and how often it scores dev; seconds are estimates."""

    total_steps: int  # the optimizer step the schedule ends at
    eval_every: int  # optimizer steps between dev evaluations (and one at the last step)
    train_s: float  # training still to do
    eval_s: float  # the evaluations still to do
    after_s: float  # what follows training: thresholds, scoring, saving

    def to_dict(self) -> dict:
        return {
            "total_steps": self.total_steps,
            "eval_every": self.eval_every,
            "train_s": round(self.train_s, 1),
            "eval_s": round(self.eval_s, 1),
            "after_s": round(self.after_s, 1),
        }


def plan_steps(
    left_s: float,
    step_s: float,
    eval_s: float,
    after_s: float,
    steps_done: int,
    steps_per_epoch: int,
    max_steps: int,
) -> Plan:
    """The plan for the `left_s` seconds a run has left, from its measured seconds per step (`step_s`) and per
    dev evaluation (`eval_s`), and the seconds needed after training (`after_s`).

    Never more than `max_steps` (what the run would do without a budget) and never fewer steps than are done.
    Evaluations: one per epoch, but at least MIN_EVALS, and at most MAX_EVAL_SHARE of the time left."""
    usable = max(0.0, FILL * (left_s - after_s) - SLACK_S)
    affordable = max(0, int(usable / max(step_s, 1e-9)))  # steps if no evaluation were made
    epochs = max(1.0, (steps_done + affordable) / max(steps_per_epoch, 1))
    n_evals = max(MIN_EVALS, math.ceil(epochs))
    n_evals = max(1, min(n_evals, int(MAX_EVAL_SHARE * usable / max(eval_s, 1e-9))))
    more = int(max(0.0, usable - n_evals * eval_s) / max(step_s, 1e-9))
    total = max(steps_done, min(max_steps, steps_done + more))
    eval_every = max(1, math.ceil(total / n_evals))
    evals_left = max(1, math.ceil((total - steps_done) / eval_every))
    return Plan(
        total_steps=total,
        eval_every=eval_every,
        train_s=(total - steps_done) * step_s,
        eval_s=evals_left * eval_s,
        after_s=after_s,
    )


def mean_step_s(fresh_s: float, cached_s: float, fresh_left: int, steps_left: int) -> float:
    """Seconds per step over the next `steps_left` steps when the first `fresh_left` of them read texts whose
    frozen layers are not cached yet (`fresh_s` each) and the rest read the cache (`cached_s` each)."""
    if steps_left <= 0:
        return fresh_s
    fresh = min(max(fresh_left, 0), steps_left)
    return (fresh * fresh_s + (steps_left - fresh) * cached_s) / steps_left


def estimate_run_s(elapsed_s: float, step_s: float, steps_left: int, eval_s: float, evals_left: int, after_s: float):
    """Whole-run seconds of an unbudgeted run: what it has taken so far plus what its plan still needs."""
    return elapsed_s + steps_left * step_s + evals_left * eval_s + after_s
