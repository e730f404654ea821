"""Hyper-parameters of the encoder: one frozen config for the model, one for training.

`ModelConfig` is everything needed to rebuild the network (it is written into every
checkpoint); `TrainConfig` is everything that shapes how it is trained. Both are
plain frozen dataclasses with commented defaults, validated on construction, so a
bad value fails where it is set rather than deep inside torch. `preset()` returns
the measured defaults for a named situation ("demo", "games") or, for "auto",
defaults chosen from the size of the data. `ContentConfig` shapes the content tower
(`content.py`) and its hashing spec; it lives here, beside the others, so that reading
or checking a config never loads torch.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Literal, get_args

from streamrec.common.errors import ConfigError
from streamrec.encoder.features import MAX_VECTOR_DIMS

logger = logging.getLogger(__name__)

LossKind = Literal["full", "sampled"]
LrSchedule = Literal["constant", "linear", "cosine"]
ItemInit = Literal["random", "cooccurrence"]
# The allowed values, read from the types above: the one list the checks and CLI share.
CHOICES: dict[str, tuple[str, ...]] = {
    "loss": get_args(LossKind), "lr_schedule": get_args(LrSchedule),
    "item_init": get_args(ItemInit),
}
PresetName = Literal["auto", "demo", "games"]
PRESETS: tuple[str, ...] = ("auto", "demo", "games")
FULL_SOFTMAX_MAX_ITEMS = 4096  # larger catalogues train with the sampled softmax by default
# Measured on Amazon Games (docs/QUALITY.md): the item table starts from co-occurrences,
# so a few epochs with the rate decayed to 0 and averaged weights rank well. The recipe
# ablation there (3 seeds, validation only): 16 epochs instead of 8, and training on each
# user's validation item (under the linear decay the best epoch was the last anyway),
# each beat the seeds' spread; more negatives, a higher rate, dropout, blocks and batch
# did not add to them. A warm start (5 epochs from the previous version) at twice the
# rate: 0.0730 test NDCG@10 against 0.0719 at the same rate (3 seeds each, spread
# +-0.0003; docs/QUALITY.md, "Warm-started retrain").
SHORT_HISTORY_RECIPE: dict[str, Any] = {
    "epochs": 16, "lr_schedule": "linear", "ema_decay": 0.999, "weight_decay": 0.1,
    "item_init": "cooccurrence", "fit_validation": True, "warm_start_lr_scale": 2.0,
}


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the SASRec-style encoder; saved with every checkpoint."""

    num_items: int  # V: known items are rows 1..V, row 0 is padding
    max_len: int = 50  # L: the most recent L items of a history are read
    hidden: int = 64  # d: embedding and hidden size
    blocks: int = 2  # transformer blocks
    heads: int = 1  # attention heads; hidden must divide by it
    ffn_mult: int = 1  # feed-forward width = ffn_mult * hidden (1 as in SASRec: cheap)
    dropout: float = 0.5  # on attention weights, residual branches and feed-forward
    emb_dropout: float = 0.5  # on the summed item + position embeddings
    init_std: float = 0.02  # N(0, init_std) for embeddings and linears; tied logits stay small

    def __post_init__(self) -> None:
        positive = {"num_items": self.num_items, "max_len": self.max_len,
                    "hidden": self.hidden, "blocks": self.blocks, "heads": self.heads,
                    "ffn_mult": self.ffn_mult}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if self.hidden % self.heads:
            raise ConfigError(f"hidden={self.hidden} must be divisible by heads={self.heads}")
        for name in ("dropout", "emb_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"ModelConfig.{name} must be in [0, 1), got {value!r}")
        if not self.init_std > 0:
            raise ConfigError(f"ModelConfig.init_std must be > 0, got {self.init_std!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready field dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown or missing keys raise ConfigError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown ModelConfig fields {unknown}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"incomplete ModelConfig {data}: {exc}") from exc


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, loss, stopping, device. Not needed to load a model."""

    epochs: int = 200  # upper bound; early stopping and max_minutes usually end it first
    batch_size: int = 64  # users per step (batches group users of similar length)
    lr: float = 1e-3  # AdamW peak learning rate
    # a warm-started run's peak rate is lr x this, unless a rate is given for it (--lr)
    warm_start_lr_scale: float = 1.0
    weight_decay: float = 0.0  # AdamW decay on matrices (never on norms, biases, positions)
    warmup_steps: int = 100  # linear warm-up, then `lr_schedule`
    lr_schedule: LrSchedule = "constant"  # after warm-up: constant, or decay to 0 at `epochs`
    ema_decay: float = 0.0  # validate and keep an exponential moving average of the weights
    item_init: ItemInit = "cooccurrence"  # item table starts from the PPMI SVD of the data
    item_init_window: int = 20  # items this many positions apart count as co-occurring
    item_init_std: float = 0.04  # entry std of that table (the other weights use init_std)
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    loss: LossKind = "sampled"  # "full": softmax over all V items; "sampled": shared negatives
    num_negatives: int = 2048  # sampled loss: negatives shared by the whole batch
    negative_power: float = 0.5  # negatives drawn ~ count**power (0 = uniform), log-q corrected
    bce_weight: float = 0.0  # + weight x SASRec's own loss: targets vs uniform items
    bce_negatives: int = 1  # uniform items per target in that loss (the paper uses 1)
    patience: int = 5  # evaluations without a better validation NDCG@10 before stopping
    eval_every: int = 1  # epochs between validation evaluations
    max_minutes: float = 15.0  # wall-clock budget for training (0 = none)
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads (0 = leave torch's default)
    eval_users: int = 8000  # validate on this many fixed random users (0 = all)
    # Also train on each user's validation item, so the model learns every interaction
    # but the held-out test one (a deployed model should learn the freshest): the epochs
    # are then fixed, the last (averaged) weights kept, and there is nothing to validate.
    fit_validation: bool = False
    bf16: bool = True  # autocast to bfloat16 on CUDA (ignored on CPU)
    compile: bool = True  # torch.compile on CUDA (ignored on CPU)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every", "bce_negatives", "item_init_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        for name in ("warmup_steps", "patience", "threads", "eval_users", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"TrainConfig.{name} must be an int >= 0, got {value!r}")
        for name, options in CHOICES.items():
            value = getattr(self, name)
            if value not in options:
                raise ConfigError(f"TrainConfig.{name} must be one of {', '.join(options)}, "
                                  f"got {value!r}")
        if self.loss == "sampled" and self.num_negatives < 1:
            raise ConfigError("TrainConfig.num_negatives must be >= 1 for the sampled loss")
        if not self.item_init_std > 0:
            raise ConfigError(f"TrainConfig.item_init_std must be > 0, got {self.item_init_std!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not self.lr > 0 or not self.warm_start_lr_scale > 0:
            raise ConfigError(f"TrainConfig.lr and warm_start_lr_scale must be > 0, got "
                              f"{self.lr!r} and {self.warm_start_lr_scale!r}")
        if min(self.weight_decay, self.grad_clip, self.max_minutes, self.negative_power,
               self.bce_weight) < 0:
            raise ConfigError("weight_decay, grad_clip, max_minutes, negative_power and "
                              "bce_weight must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready field dict."""
        return dataclasses.asdict(self)


def auto_config(
    num_items: int, num_users: int, num_interactions: int
) -> tuple[ModelConfig, TrainConfig]:
    """Defaults from the size of the data.

    Short histories (Amazon-like, mean < 20) get L = 50, dropout 0.3 and the measured
    short-history recipe; long ones (MovieLens-like) get L = 200 and light dropout.
    The full softmax costs positions x V logits per epoch (Games, 24k items: ~2 min per
    epoch on 2 cores against ~10 s sampled), so catalogues past a few thousand items use
    the sampled loss.
    """
    mean_len = num_interactions / max(num_users, 1)
    sparse = mean_len < 20
    model = ModelConfig(
        num_items=num_items,
        max_len=50 if sparse else 200,
        hidden=64 if num_interactions < 2_000_000 else 128,
        blocks=2,
        heads=1 if sparse else 2,
        dropout=0.3 if sparse else 0.2,
        emb_dropout=0.3 if sparse else 0.2,
    )
    train = TrainConfig(
        loss="full" if num_items <= FULL_SOFTMAX_MAX_ITEMS else "sampled",
        max_minutes=14.5,  # the whole run, validation passes included, stays under 15
        # Short histories make small matmuls: a second thread gains ~12% per step, and
        # on a shared machine every parallel op waits for a preempted thread (4x slower).
        threads=1 if sparse else 0,
        **(SHORT_HISTORY_RECIPE if sparse else {"ema_decay": 0.999}),
    )
    return model, train


def preset(
    name: str, num_items: int, num_users: int, num_interactions: int
) -> tuple[ModelConfig, TrainConfig]:
    """The named preset's configs for a vocabulary of `num_items`.

    - "auto": `auto_config` from the data size.
    - "demo": small and fast, for the synthetic log of the demo (~2,000 users, < 60 s CPU).
    - "games": the measured configuration of docs/QUALITY.md for Amazon Games.
    """
    if name == "auto":
        return auto_config(num_items, num_users, num_interactions)
    if name == "demo":
        return (
            ModelConfig(num_items=num_items, max_len=30, hidden=48, blocks=2, heads=1,
                        ffn_mult=2, dropout=0.1, emb_dropout=0.1),
            TrainConfig(loss="full", epochs=30, batch_size=64, lr=3e-3, warmup_steps=20,
                        patience=3, max_minutes=1.0),
        )
    if name == "games":  # what "auto" picks for Games, pinned so heuristics cannot move it
        return (
            ModelConfig(num_items=num_items, max_len=50, hidden=64, blocks=2, heads=1,
                        ffn_mult=1, dropout=0.3, emb_dropout=0.3),
            TrainConfig(loss="sampled", num_negatives=2048, batch_size=64, lr=1e-3,
                        **SHORT_HISTORY_RECIPE, eval_users=8000, max_minutes=14.5,
                        patience=5, threads=1),
        )
    raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")


# Bump when a token's text or bucket could change (the regex, normalisation, prefixes,
# hash): a checkpoint trained under another version would read features differently.
TOKENIZER_VERSION = 1
# What a ContentConfig saved before the feature vocabulary existed was trained with.
BEFORE_VOCABULARY: dict[str, Any] = {"min_items": 0, "token_dropout": 0.0,
                                     "unknown_rows": False}
# ContentConfig fields that shape only training: a warm start may change them.
TRAINING_ONLY = ("id_dropout", "token_dropout")


@dataclass(frozen=True)
class ContentConfig:
    """Shape of the content tower and its hashing spec; saved with the checkpoint."""

    buckets: int = 2**15  # rows of the hashed token table (row 0 = padding)
    max_categories: int = 8  # an item's first distinct categories that count
    max_words: int = 40  # text tokens per item: words and word bigrams, in text order
    bigrams: bool = True  # "red shoe" as a token of its own beside "red" and "shoe"
    vector_dim: int = 0  # Dv of `features.vector` (0 = no dense vector)
    # Measured on MovieLens cold splits (docs/QUALITY.md, "Item cold start", ablation).
    id_dropout: float = 0.2  # training: share of featured items seen through content alone
    min_items: int = 2  # the vocabulary: a token counts once this many trained items have it
    token_dropout: float = 0.0  # training: share of an item's tokens left out at each read
    unknown_rows: bool = True  # tokens outside the vocabulary share one trained row per field
    salt: str = "streamrec"  # hashed in front of every token
    tokenizer: int = TOKENIZER_VERSION  # the tokenizing rules the buckets were made with

    def __post_init__(self) -> None:
        for name in ("buckets", "max_categories", "max_words"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"ContentConfig.{name} must be a positive int, got {value!r}")
        if self.buckets < 2:
            raise ConfigError("ContentConfig.buckets must be >= 2 (row 0 is padding)")
        if not isinstance(self.vector_dim, int) or not 0 <= self.vector_dim <= MAX_VECTOR_DIMS:
            raise ConfigError(f"ContentConfig.vector_dim must be an int in [0, "
                              f"{MAX_VECTOR_DIMS}], got {self.vector_dim!r}")
        for name in ("id_dropout", "token_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"ContentConfig.{name} must be in [0, 1), got "
                                  f"{getattr(self, name)!r}")
        if not isinstance(self.min_items, int) or self.min_items < 0:
            raise ConfigError(f"ContentConfig.min_items must be an int >= 0 (0: no "
                              f"vocabulary, every bucket counts), got {self.min_items!r}")
        if self.tokenizer != TOKENIZER_VERSION:
            raise ConfigError(f"features were hashed with tokenizer version {self.tokenizer!r}"
                              f"; this streamrec hashes with version {TOKENIZER_VERSION}: "
                              "retrain with --item-features, or use the release that wrote it")

    @property
    def max_tokens(self) -> int:
        """T: token slots per item, categories first (`ContentInputs.tokens`)."""
        return self.max_categories + self.max_words

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready field dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContentConfig:
        """Inverse of `to_dict`; unknown or missing keys raise ConfigError. A config
        written before the feature vocabulary (no `min_items`, `token_dropout`) reads as
        what it was trained with: every bucket counts, no token dropout."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown ContentConfig fields {unknown}")
        data = {**{k: v for k, v in BEFORE_VOCABULARY.items() if k not in data}, **data}
        missing = sorted(names - set(data))
        if missing:
            raise ConfigError(f"incomplete ContentConfig {data}: missing {missing}")
        return cls(**data)
