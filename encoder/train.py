"""Train the encoder: leave-one-out split, cross-entropy on every position, early stopping.

`train_model` trains on each user's history minus its last two items, predicting
every next item (the losses live in `losses.py`), and after each epoch ranks every
item for the held-out second-to-last one (validation NDCG@10, full ranking). The
item table starts from the data's co-occurrences (`cooccurrence.py`) unless asked
otherwise, or from a trained model grown to the data's items (`warmstart.py`, a warm
start); the learning rate warms up and then follows its schedule; with
`ema_decay` a moving average of the weights is what gets validated and kept. It
keeps the best weights, stops when validation stops improving or the time budget
runs out, and can resume from the training state it saves after every epoch. With
`fit_validation` the second-to-last item is trained on too (only the last stays out):
nothing is validated, the epochs are fixed and the last (averaged) weights are kept.

Most histories are short (Amazon Games: ~9 items, L = 50), so batches group users
of similar length, are trimmed to their longest history, and the loss is computed
on real positions only; that is several times cheaper than padding every row to L.

Under `torchrun` every process trains on its share of each batch and DDP averages the
gradients (`distributed.py`: the batch size stays the global one); process 0 alone
validates, reports, and writes the training state and the checkpoint.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from streamrec.encoder import distributed
from streamrec.encoder.batching import batch_bounds, train_batches
from streamrec.encoder.checkpoint import save_checkpoint
from streamrec.encoder.config import ContentConfig, ModelConfig, TrainConfig
from streamrec.encoder.content import content_config_for, feature_vocabulary, item_content
from streamrec.encoder.cooccurrence import cooccurrence_embeddings
from streamrec.encoder.data import Interactions
from streamrec.encoder.errors import TrainingError
from streamrec.encoder.evaluate import ModelScorer, evaluate
from streamrec.encoder.features import ItemFeatures
from streamrec.encoder.losses import LossFn, NegativeSampler, make_loss_fn
from streamrec.encoder.model import SASRec
from streamrec.encoder.schedule import lr_multiplier, time_left
from streamrec.encoder.split import EvalCases, leave_one_out
from streamrec.encoder.train_state import STATE_DIR, TrainState, cpu_state, load_state, save_state
from streamrec.encoder.warmstart import WarmStart

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """The trained model (best validation weights) and how training went."""

    model: SASRec
    history: list[dict[str, float]]  # per epoch: epoch, loss, val_ndcg10, val_hr10, seconds
    best_epoch: int
    best_val_ndcg10: float | None  # None: `fit_validation` trained on the validation items
    wall_seconds: float
    stopped: str  # "patience", "time budget", "epochs"
    checkpoint: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # False on the other processes of a torchrun launch: process 0 holds the kept model
    # (best weights) and wrote the files; these hold the last weights and wrote nothing.
    main: bool = True


def train_model(
    interactions: Interactions,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    initial: WarmStart | None = None,
    item_features: Mapping[str, ItemFeatures] | None = None,
    content: ContentConfig | None = None,
) -> TrainResult:
    """Train an encoder on `interactions` and return the best-validation model.

    With `checkpoint_dir`, the training state is saved there (`train_state/`) after
    every epoch and the final checkpoint is written there; `resume=True` continues
    from that state (the time budget counts the earlier run too). `progress` shows a
    tqdm bar with the running loss and sequences per second. `initial` (a warm start)
    is the model to train from instead of a fresh one; its config must be
    `model_config`, and the checkpoint meta records which version it grew from.
    `item_features` (item id -> features) gives a fresh model a content tower shaped
    by `content` (defaults; the vector dimension is the features'); a warm start
    brings its own tower and features. Under torchrun every process calls this with
    the same arguments (`distributed.py`); resuming reads the state on every process.
    """
    if model_config.num_items != interactions.num_items:
        raise TrainingError(f"model_config.num_items={model_config.num_items} but the data has "
                            f"{interactions.num_items} items")
    if initial is not None and initial.model.config != model_config:
        raise TrainingError(f"the warm start's model is {initial.model.config}, not "
                            f"{model_config}; build both with warmstart.warm_model_config")
    if initial is not None and (item_features is not None or content is not None):
        raise TrainingError("a warm start brings its own content tower: pass the item "
                            "features to warmstart.warm_start instead")
    if content is not None and item_features is None:
        raise TrainingError("a content tower needs item features (--item-features FILE)")
    if item_features is not None:
        content = content_config_for(item_features.values(), content)
    threads = torch.get_num_threads()
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    ranks = distributed.ranks_from_env()
    device = distributed.training_device(train_config.device, ranks)
    try:
        with distributed.joined(ranks, device):
            return _train(interactions, model_config, train_config, checkpoint_dir, resume,
                          progress, initial, (item_features, content), (ranks, device))
    finally:
        torch.set_num_threads(threads)


def _train(interactions: Interactions, model_config: ModelConfig, tc: TrainConfig,
           checkpoint_dir: str | Path | None, resume: bool, progress: bool,
           initial: WarmStart | None,
           content: tuple[Mapping[str, ItemFeatures] | None, ContentConfig | None],
           where: tuple[distributed.Ranks, torch.device],
           ) -> TrainResult:
    """The training run of `train_model`: set up, run the epochs, keep the best, save."""
    ranks, device = where
    distributed.check_same_data(interactions, ranks)
    split = leave_one_out(interactions)
    if tc.fit_validation:
        split = split.with_validation_trained()
    train_seqs = [s for s in split.train if len(s) >= 2]
    if not train_seqs:
        raise TrainingError("no user has 2 or more training interactions; nothing to learn")
    steps = len(batch_bounds(len(train_seqs), tc.batch_size, ranks.world_size))
    torch.manual_seed(tc.seed)  # the same weights on every process
    model = _start_model(model_config, tc, split.train, initial, resume, interactions.vocab.ids,
                         *content).to(device)
    loss_fn = distributed.data_parallel(model, make_loss_fn(model, tc, device), device, ranks)
    run = _Run(model=model, optimizer=_optimizer(model, tc), tc=tc, device=device,
               loss_fn=loss_fn, progress=progress and ranks.is_main,
               total_steps=tc.epochs * steps, ema=_ema_copy(model) if tc.ema_decay else None,
               ranks=ranks)
    if tc.loss == "sampled":
        counts = torch.as_tensor(split.train_item_counts())  # never the held-out items
        run.sampler = NegativeSampler(counts.to(device), tc)
    state_dir = Path(checkpoint_dir) / STATE_DIR if checkpoint_dir is not None else None
    if resume:
        if state_dir is None or not (state_dir / "state.json").is_file():
            shared = (" (under torchrun every process reads it: --out must be on a filesystem "
                      "that all of them see)" if ranks.distributed else "")
            raise TrainingError(f"nothing to resume: no training state under {state_dir}{shared}")
        run.state = load_state(state_dir, model, run.optimizer, tc, run.ema)
    state = run.state
    logger.info("training on %d users (%d positions), %d items, %s loss, device %s%s",
                len(train_seqs), sum(len(s) - 1 for s in train_seqs), model_config.num_items,
                tc.loss, device, f", process {ranks.rank} of {ranks.world_size} (each trains "
                f"on its share of every batch of {tc.batch_size})" if ranks.distributed else "")
    start = time.perf_counter() - state.seconds
    val_cases = None if tc.fit_validation else _validation_cases(split.validation, tc)
    stopped = _epochs(run, train_seqs, val_cases, state_dir, start)
    if tc.fit_validation:  # nothing held out to choose by: the last (averaged) weights
        state.best_weights = cpu_state(run.ema if run.ema is not None else model)
        state.best_epoch = state.epoch
    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    model.eval()
    result = TrainResult(
        model=model, history=state.history, best_epoch=state.best_epoch,
        best_val_ndcg10=None if tc.fit_validation else state.best_val,
        wall_seconds=round(time.perf_counter() - start, 2),
        stopped=stopped, main=ranks.is_main,
    )
    result.meta = _meta(interactions, train_seqs, tc, result, initial, ranks.world_size)
    if checkpoint_dir is not None and ranks.is_main:
        result.checkpoint = save_checkpoint(checkpoint_dir, model.cpu(), interactions.vocab,
                                            interactions.item_counts(), meta=result.meta)
        model.to(device)
    distributed.wait_for_main(ranks)  # the others leave once process 0 has written
    if ranks.is_main:
        logger.info("trained %d epochs in %.1fs (%s); %s", state.epoch, result.wall_seconds,
                    stopped, "validation items trained on" if tc.fit_validation else
                    f"best epoch {state.best_epoch}, val NDCG@10 {state.best_val:.4f}")
    return result


def _epochs(run: _Run, train_seqs: list[np.ndarray], val_cases: EvalCases | None,
            state_dir: Path | None, start: float) -> str:
    """Epochs until the last, the time budget or patience -> why training stopped.

    Process 0 validates (unless `val_cases` is None: `fit_validation`) and saves the
    state; the others take its best epoch and patience count, so all of them stop after
    the same epoch.
    """
    tc, state, ranks = run.tc, run.state, run.ranks
    deadline = start + tc.max_minutes * 60 if tc.max_minutes else math.inf
    for epoch in range(state.epoch + 1, tc.epochs + 1):
        # Dropout and negatives: resumable, and their own on each process.
        torch.manual_seed((tc.seed + ranks.rank) * 1_000_003 + epoch)
        batches = train_batches(train_seqs, run.model.config.max_len, tc.batch_size,
                                np.random.default_rng([tc.seed, epoch]), ranks.rank,
                                ranks.world_size)
        loss, out_of_time = _run_epoch(run, batches, epoch, deadline)
        row: dict[str, float] = {"epoch": epoch, "loss": loss}
        if val_cases is not None and (epoch % tc.eval_every == 0 or out_of_time
                                      or epoch == tc.epochs):
            if ranks.is_main:
                row.update(_validate_and_keep_best(run, val_cases, epoch))
            best = distributed.from_main([state.best_val, state.best_epoch, state.bad_evals],
                                         ranks)
            state.best_val, state.best_epoch, state.bad_evals = best[0], int(best[1]), int(best[2])
        row["seconds"] = round(time.perf_counter() - start, 2)
        state.history.append(row)
        state.epoch, state.seconds = epoch, row["seconds"]
        if ranks.is_main:
            logger.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                                                         if k != "epoch"))
        if state_dir is not None and ranks.is_main:
            save_state(state_dir, run.model, run.optimizer, state, tc, run.ema)
        if out_of_time:
            return "time budget"
        if tc.patience and state.bad_evals >= tc.patience:
            return "patience"
    return "epochs"


def _start_model(model_config: ModelConfig, tc: TrainConfig, train: list[np.ndarray],
                 initial: WarmStart | None, resume: bool, ids: list[str],
                 features: Mapping[str, ItemFeatures] | None,
                 content: ContentConfig | None) -> SASRec:
    """A copy of the warm start's model, else a fresh one (with a tower holding the
    vocabulary's features when given) whose item table starts from the co-occurrences
    of the training sequences (`tc.item_init`; resumed runs load theirs). A tower reads
    the tokens that the items of `train` share (`content.feature_vocabulary`)."""
    if initial is not None:
        logger.info("warm start from %s: item_init %r not used", initial.from_version,
                    tc.item_init)
        return copy.deepcopy(initial.model)  # the caller's start stays as it was
    model = SASRec(model_config, content)
    if model.content is not None and content is not None and features is not None:
        model.set_item_content(item_content(ids, features, content))
        rows = np.unique(np.concatenate(train)) if train else np.zeros(0, np.int64)
        trained = [features.get(ids[row - 1]) for row in rows[rows > 0].tolist()]
        model.content.set_vocabulary(feature_vocabulary(trained, content))
    if tc.item_init == "cooccurrence" and not resume:
        table = cooccurrence_embeddings(train, model_config.num_items, model_config.hidden,
                                        window=tc.item_init_window, std=tc.item_init_std)
        with torch.no_grad():
            model.item_emb.weight.copy_(table)
    return model


@dataclass
class _Run:
    """The pieces one training run's steps share."""

    model: SASRec
    optimizer: torch.optim.AdamW
    tc: TrainConfig
    device: torch.device
    loss_fn: LossFn
    progress: bool
    total_steps: int  # epochs x batches per epoch: where a decaying schedule reaches 0
    ema: SASRec | None = None  # moving average of the weights; validated and kept if set
    sampler: NegativeSampler | None = None
    state: TrainState = field(default_factory=TrainState)
    ranks: distributed.Ranks = field(default_factory=distributed.Ranks)


def _run_epoch(run: _Run, batches: Iterator[tuple[Tensor, Tensor]], epoch: int,
               deadline: float) -> tuple[float, bool]:
    """One pass over the batches -> (mean loss per position, ran out of time)."""
    tc, state = run.tc, run.state
    run.model.train()
    total, n_pos, n_seq, steps = 0.0, 0, 0, 0
    tick = time.perf_counter()
    bar = tqdm(list(batches), desc=f"epoch {epoch}", disable=not run.progress, leave=False)
    out_of_time = False
    for x, y in bar:
        for group in run.optimizer.param_groups:
            group["lr"] = tc.lr * lr_multiplier(state.step, run.total_steps, tc)
        loss, positions = run.loss_fn(x.to(run.device), y.to(run.device), run.sampler)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), tc.grad_clip)
        run.optimizer.step()
        if run.ema is not None:
            _update_ema(run.ema, run.model, tc.ema_decay, state.step)
        state.step += 1
        total += loss.item() * positions
        n_pos += positions
        n_seq, steps = n_seq + x.shape[0], steps + 1
        elapsed = max(time.perf_counter() - tick, 1e-9)
        left = time_left(run.total_steps - state.step, elapsed / steps, deadline)
        bar.set_postfix(loss=f"{total / n_pos:.3f}", seq_s=f"{n_seq / elapsed:.0f}",
                        run_left=tqdm.format_interval(left))
        if distributed.agree(time.perf_counter() > deadline, run.ranks):  # process 0's clock
            out_of_time = True
            break
    bar.close()
    total, n_pos = distributed.summed([total, n_pos], run.ranks)  # all see a divergence
    if not math.isfinite(total):
        raise TrainingError(f"loss diverged at epoch {epoch}; lower the learning rate")
    return total / max(n_pos, 1), out_of_time


def _validate_and_keep_best(run: _Run, cases: EvalCases, epoch: int) -> dict[str, float]:
    """Validation metrics for the history row; keeps the best weights and the patience count."""
    kept = run.ema if run.ema is not None else run.model
    metrics = _validate(kept, cases, run.device)
    state = run.state
    if metrics["ndcg@10"] > state.best_val:
        state.best_val, state.best_epoch = metrics["ndcg@10"], epoch
        state.best_weights = cpu_state(kept)
        state.bad_evals = 0
    else:
        state.bad_evals += 1
    return {"val_ndcg10": metrics["ndcg@10"], "val_hr10": metrics["hr@10"]}


def _ema_copy(model: SASRec) -> SASRec:
    """A frozen copy of `model` that `_update_ema` keeps averaging into."""
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def _update_ema(ema: SASRec, model: SASRec, decay: float, step: int) -> None:
    """ema <- decay' * ema + (1 - decay') * model, with decay' ramping up over early steps
    (so the average does not remember the random initialisation)."""
    weight = 1.0 - min(decay, (1 + step) / (10 + step))
    for averaged, current in zip(ema.parameters(), model.parameters(), strict=True):
        averaged.lerp_(current, weight)


def _validation_cases(cases: EvalCases, tc: TrainConfig) -> EvalCases:
    """All validation cases, or a fixed random subset of `eval_users` of them."""
    if not tc.eval_users or tc.eval_users >= len(cases):
        return cases
    pick = np.random.default_rng(tc.seed).choice(len(cases), tc.eval_users, replace=False)
    return cases.take(np.sort(pick))


def _optimizer(model: SASRec, tc: TrainConfig) -> torch.optim.AdamW:
    """AdamW; decay on matrices only (not norms, biases or position embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and not name.startswith("pos_emb") else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": tc.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=(0.9, 0.98))


def _validate(model: SASRec, cases: EvalCases, device: torch.device) -> dict[str, float]:
    """Full-ranking HR@10 / NDCG@10 of the validation cases (second-to-last items)."""
    scorer = ModelScorer(model, device=device, batch_size=1024)
    metrics = evaluate(scorer, cases, protocol="full", ks=(10,), batch_size=2048,
                       max_len=model.config.max_len, name="validation")
    return {"ndcg@10": metrics.ndcg[10], "hr@10": metrics.hr[10]}


def _meta(data: Interactions, train_seqs: list[np.ndarray], tc: TrainConfig,
          result: TrainResult, initial: WarmStart | None, processes: int) -> dict[str, Any]:
    """The training summary stored in the checkpoint's config.json."""
    model = result.model
    return {
        "data": {"source": data.report.source, "format": data.report.format,
                 "users": data.num_users, "items": data.num_items,
                 "interactions": data.num_interactions, "train_users": len(train_seqs)},
        "train_config": tc.to_dict(),
        "processes": processes,  # torchrun's WORLD_SIZE; batch_size is the global batch
        "metrics": {"best_epoch": result.best_epoch, "val_ndcg@10": result.best_val_ndcg10,
                    "epochs": len(result.history), "wall_seconds": result.wall_seconds,
                    "stopped": result.stopped},
        "history": result.history,
        "popularity": "interaction counts over the whole training log",
        "warm_start": None if initial is None else initial.meta(),
        "content": None if model.content is None else {
            **model.content.config.to_dict(),
            "items_with_features": int(model.stored_content().present().sum()),
            "items_read_by_tower": int(model.content.reads(model.stored_content()).sum()),
            "vocabulary_buckets": int(model.content.known[1:].sum())},
    }
