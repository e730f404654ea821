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
    hidden = model(x)  # [B, W, d]
    real = x > 0  # position t has an item, so it predicts y[t] (also > 0)
    h = hidden[real]  # [N, d]
    target = y[real]  # [N]
    table = model.item_embeddings()  # [V + 1, d]
    pos = (h * table[target]).sum(-1)  # [N]
    if sampler is None:
        logits = h @ table[1:].T  # [N, V]; row 0 (padding) is never a candidate
        loss = F.cross_entropy(logits.float(), target - 1)
    else:
        neg = sampler.sample()  # [K]
        neg_logits = h @ table[neg].T - sampler.log_q[neg]  # [N, K]
        neg_logits = neg_logits.masked_fill(neg[None, :] == target[:, None], float("-inf"))
        logits = torch.cat([(pos - sampler.log_q[target])[:, None], neg_logits], dim=1)
        zeros = torch.zeros(len(target), dtype=torch.long, device=x.device)
        loss = F.cross_entropy(logits.float(), zeros)  # the target is column 0
    if bce_weight:
        shape = (len(target), bce_negatives)
        other = torch.randint(1, table.shape[0], shape, device=x.device)  # [N, k]
        neg_scores = torch.einsum("nd,nkd->nk", h, table[other]).float()  # [N, k]
        neg_loss = F.softplus(neg_scores).masked_fill(other == target[:, None], 0.0)
        bce = F.softplus(-pos.float()) + neg_loss.mean(dim=1)
        loss = loss + bce_weight * bce.mean()
    return loss, int(target.numel())


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
