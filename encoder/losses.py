"""Training losses: cross-entropy of every next item, full or over sampled negatives.

`sequence_loss` scores each real position of a batch of histories against the item
table: a softmax over all V items (`loss="full"`), or over K negatives shared by the
whole batch and drawn by `NegativeSampler` with the log-q correction that keeps the
sampled softmax an estimate of the full one. `make_loss_fn` binds it to a model and
a config, under bf16 autocast and torch.compile on CUDA.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from streamrec.encoder.config import TrainConfig
from streamrec.encoder.model import SASRec

logger = logging.getLogger(__name__)

# (inputs [B, W], targets [B, W], sampler) -> (mean loss, positions)
LossFn = Callable[[Tensor, Tensor, "NegativeSampler | None"], tuple[Tensor, int]]


class NegativeSampler:
    """Shared negatives drawn ~ (count + 1)^power, with the log q that corrects for it.

    Subtracting log(K q) from every logit makes the sampled softmax an estimate of the
    full one whatever q is; q only decides which items get gradient how often.
    """

    def __init__(self, counts: Tensor, tc: TrainConfig) -> None:
        weights = (counts.float().clamp(min=0) + 1.0) ** tc.negative_power
        weights[0] = 0.0
        self.probs = weights / weights.sum()  # [V + 1]
        self.log_q = torch.log(self.probs.clamp(min=1e-12) * tc.num_negatives)
        self.k = tc.num_negatives

    def sample(self) -> Tensor:
        """[K] item rows (with replacement, never row 0)."""
        return torch.multinomial(self.probs, self.k, replacement=True)


def sequence_loss(model: SASRec, x: Tensor, y: Tensor, sampler: NegativeSampler | None,
          bce_weight: float = 0.0, bce_negatives: int = 1) -> tuple[Tensor, int]:
    """Mean cross-entropy over real positions of x [B, W] -> (loss, positions).

    With `bce_weight`, adds the SASRec paper's binary loss (each target against
    `bce_negatives` uniformly drawn items): it pushes rarely seen items' absolute
    scores down, which the sampled-100 protocol (uniform negatives) rewards and a
    softmax, which only sees score differences, leaves alone.
    """
    id_mask = model.id_dropout_mask()  # [V + 1] or None: one ID-dropout draw per step
    hidden = model(x, id_mask)  # [B, W, d]
    real = x > 0  # position t has an item, so it predicts y[t] (also > 0)
    h = hidden[real]  # [N, d]
    target = y[real]  # [N]
    # All rows are drawn before any is looked up (a tower then runs once over them);
    # the draws keep the order they always had, nothing else between them is random.
    neg = sampler.sample() if sampler is not None else None  # [K]
    shape = (len(target), bce_negatives)
    other = (torch.randint(1, model.config.num_items + 1, shape, device=x.device)
             if bce_weight else None)  # [N, k]
    table = _step_rows(model, id_mask, None if neg is None else [target, neg, other])
    pos = (h * table(target)).sum(-1)  # [N]
    if sampler is None or neg is None:
        logits = h @ table(None)[1:].T  # [N, V]; row 0 (padding) is never a candidate
        loss = F.cross_entropy(logits.float(), target - 1)
    else:
        neg_logits = h @ table(neg).T - sampler.log_q[neg]  # [N, K]
        neg_logits = neg_logits.masked_fill(neg[None, :] == target[:, None], float("-inf"))
        logits = torch.cat([(pos - sampler.log_q[target])[:, None], neg_logits], dim=1)
        zeros = torch.zeros(len(target), dtype=torch.long, device=x.device)
        loss = F.cross_entropy(logits.float(), zeros)  # the target is column 0
    if other is not None:
        neg_scores = torch.einsum("nd,nkd->nk", h, table(other)).float()  # [N, k]
        neg_loss = F.softplus(neg_scores).masked_fill(other == target[:, None], 0.0)
        bce = F.softplus(-pos.float()) + neg_loss.mean(dim=1)
        loss = loss + bce_weight * bce.mean()
    return loss, int(target.numel())


def _step_rows(model: SASRec, id_mask: Tensor | None, wanted: list[Tensor | None] | None
               ) -> Callable[[Tensor | None], Tensor]:
    """rows [...] (None: all) -> their item rows [..., d] for one step.

    Without a tower: the table's rows, as they always were read. With one, the rows
    the loss will read (`wanted`; None: the full softmax reads them all) go through the
    tower in one call: every call's backward costs a dense gradient of its buckets.
    """
    if model.content is None:
        return lambda rows: model.item_embeddings(rows)
    if wanted is None:
        full = model.item_embeddings(None, id_mask)  # [V + 1, d]
        return lambda rows: full if rows is None else full[rows]
    unique = torch.cat([w.reshape(-1) for w in wanted if w is not None]).unique()  # [U]
    found = model.item_embeddings(unique, id_mask)  # [U, d]

    def lookup(rows: Tensor | None) -> Tensor:
        if rows is None:
            raise ValueError("the sampled loss reads only the rows it asked for")
        return found[torch.searchsorted(unique, rows)]

    return lookup


def make_loss_fn(model: SASRec, tc: TrainConfig, device: torch.device) -> LossFn:
    """The loss function; on CUDA under bf16 autocast and torch.compile when asked.

    torch.compile is an optimisation, never a requirement: it compiles lazily, so a
    failure shows up at the first call, and then training falls back to eager mode.
    """
    if device.type != "cuda":
        return lambda x, y, s: sequence_loss(model, x, y, s, tc.bce_weight, tc.bce_negatives)
    fns = [sequence_loss]
    if tc.compile:
        fns.insert(0, torch.compile(sequence_loss, dynamic=True))

    def run(x: Tensor, y: Tensor, s: NegativeSampler | None) -> tuple[Tensor, int]:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=tc.bf16):
            while True:
                try:
                    return fns[0](model, x, y, s, tc.bce_weight, tc.bce_negatives)
                except Exception as exc:  # only while a compiled version is still tried
                    if len(fns) == 1:
                        raise
                    logger.warning("torch.compile failed (%s); training eagerly", exc)
                    fns.pop(0)

    return run
