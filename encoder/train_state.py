"""The training state saved after every epoch, from which `streamrec train --resume` goes on.

`train.py` runs epochs; this is what one epoch boundary leaves behind so an
interrupted run can continue where it stopped: the weights (current, best and
averaged), the optimiser's moments, the counters and the validation history. All
tensors go to safetensors and the counters to `state.json`, so resuming unpickles
nothing. A state written for another model (its ModelConfig or content tower) is
refused rather than half-loaded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from streamrec.encoder.config import TrainConfig
from streamrec.encoder.errors import TrainingError
from streamrec.encoder.model import SASRec

logger = logging.getLogger(__name__)

STATE_DIR = "train_state"  # under checkpoint_dir: what --resume continues from
STATE_VERSION = 1


@dataclass
class TrainState:
    """What an epoch boundary needs to continue: counters, history, best weights."""

    epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    best_val: float = -1.0
    best_epoch: int = 0
    bad_evals: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_weights: dict[str, Tensor] | None = None


def cpu_state(model: SASRec) -> dict[str, Tensor]:
    """A copy of the model's state dict on the CPU (weights and the tower's buffers)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_state(root: Path, model: SASRec, optimizer: torch.optim.AdamW, state: TrainState,
               tc: TrainConfig, ema: SASRec | None) -> None:
    """Weights, best and averaged weights, optimiser moments (safetensors), counters (json)."""
    root.mkdir(parents=True, exist_ok=True)
    save_file(cpu_state(model), str(root / "model.safetensors"))
    if ema is not None:
        save_file(cpu_state(ema), str(root / "ema.safetensors"))
    if state.best_weights is not None:
        save_file(state.best_weights, str(root / "best.safetensors"))
    moments: dict[str, Tensor] = {}
    for i, p in enumerate(model.parameters()):
        for key, value in optimizer.state.get(p, {}).items():
            moments[f"{i}.{key}"] = value.detach().to("cpu").reshape(value.shape).contiguous()
    save_file(moments, str(root / "optimizer.safetensors"))
    doc = {"version": STATE_VERSION, "model": model.config.to_dict(), "train": tc.to_dict(),
           **{k: v for k, v in dataclasses.asdict(state).items() if k != "best_weights"}}
    if model.content_config is not None:  # absent without a tower, as before the tower
        doc["content"] = model.content_config.to_dict()
    (root / "state.json.tmp").write_text(json.dumps(doc), encoding="utf-8")
    (root / "state.json.tmp").replace(root / "state.json")


def load_state(root: Path, model: SASRec, optimizer: torch.optim.AdamW, tc: TrainConfig,
               ema: SASRec | None) -> TrainState:
    """Restore what `save_state` wrote; refuse a state of another model or tower."""
    doc = json.loads((root / "state.json").read_text(encoding="utf-8"))
    content = model.content_config.to_dict() if model.content_config is not None else None
    if (doc.get("version") != STATE_VERSION or doc.get("model") != model.config.to_dict()
            or doc.get("content") != content):
        raise TrainingError(f"{root} holds the state of a different model or streamrec "
                            "version; train from scratch (drop --resume) or use its config "
                            "(and its --item-features)")
    model.load_state_dict(load_file(str(root / "model.safetensors")))
    if ema is not None:
        averaged = root / "ema.safetensors"
        if not averaged.is_file():
            raise TrainingError(f"{root} has no averaged weights (ema.safetensors) but "
                                "ema_decay is set; resume with the run's own config")
        ema.load_state_dict(load_file(str(averaged)))
    moments = load_file(str(root / "optimizer.safetensors"))
    device = next(model.parameters()).device
    for i, p in enumerate(model.parameters()):
        keys = [k.split(".", 1)[1] for k in moments if k.split(".", 1)[0] == str(i)]
        if keys:
            optimizer.state[p] = {k: moments[f"{i}.{k}"].to("cpu" if k == "step" else device)
                                  for k in keys}
    state = TrainState(**{k: doc[k] for k in ("epoch", "step", "seconds", "best_val",
                                              "best_epoch", "bad_evals", "history")})
    if (root / "best.safetensors").is_file():
        state.best_weights = load_file(str(root / "best.safetensors"))
    logger.info("resuming after epoch %d (step %d) from %s", state.epoch, state.step, root)
    return state
