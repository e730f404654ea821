"""What changes with a training step: the learning rate's schedule and the time left.

Kept beside `train.py`, which calls both once per step.
"""

from __future__ import annotations

import math
import time

from streamrec.encoder.config import TrainConfig


def lr_multiplier(step: int, total_steps: int, tc: TrainConfig) -> float:
    """Multiplier of the peak learning rate at `step`: linear warm-up, then the schedule."""
    if step < tc.warmup_steps:
        return (step + 1) / tc.warmup_steps
    if tc.lr_schedule == "constant":
        return 1.0
    done = min(1.0, (step - tc.warmup_steps) / max(total_steps - tc.warmup_steps, 1))
    if tc.lr_schedule == "linear":
        return 1.0 - done
    return 0.5 * (1.0 + math.cos(math.pi * done))


def time_left(steps_left: int, seconds_per_step: float, deadline: float) -> float:
    """The progress bar's `run_left`: seconds to the last step at this pace, or to the
    time budget (`deadline`, perf_counter) if sooner; early stopping can end it sooner."""
    return max(0.0, min(steps_left * seconds_per_step, deadline - time.perf_counter()))
