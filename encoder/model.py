"""The SASRec-style attention encoder: item histories in, query vectors out.

A history is a left-padded row of item rows `[B, L]` (0 = padding, newest item last).
Item and position embeddings go through `blocks` pre-norm transformer blocks with
causal self-attention; the output at the last position, after a final LayerNorm,
is the query. Scores are inner products with the item embedding table itself
(tied input/output embeddings), so a FAISS inner-product search over
`item_embeddings()` returns exactly the model's top-k.

Positions are counted from the newest item backwards (the newest item always has
position L-1), so extra left padding never changes a history's output: the worker
may trim a batch to its longest history.

With a content tower (`content.py`, given a `ContentConfig`), an item's row is its ID
embedding plus the content vector of its features, held as buffers for the known
items; the sum is what histories read and what scores are taken against, so the
FAISS property above holds. Training drops the ID part of a random share of the
featured rows (those whose features the tower reads) each step (ID dropout), so that
the content vector alone comes to stand for an item: `content_vectors` embeds an item
the model never saw. Without a tower the model is exactly the plain SASRec (same
weights, same random draws).
"""

from __future__ import annotations

import functools
import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import skip_init

from streamrec.common.errors import ConfigError
from streamrec.encoder.config import ContentConfig, ModelConfig
from streamrec.encoder.content import ContentInputs, ContentTower

logger = logging.getLogger(__name__)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t that are items."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
        self.proj = nn.Linear(config.hidden, config.hidden)
        self.attn_dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def last(self, x: Tensor, allowed: Tensor) -> tuple[Tensor, Tensor]:
        """Only the last position's output: x [B, L, d], allowed [B, L] (True = may attend)
        -> ([B, d], weights [B, H, L]).

        Inference only: the last block's other positions feed nothing, so the query
        needs their keys and values but not their queries, outputs or MLPs.
        """
        b, t, d = x.shape  # batch, length, hidden
        dh = d // self.heads
        weight, bias = self.qkv.weight, self.qkv.bias
        q = F.linear(x[:, -1], weight[:d], bias[:d]).view(b, self.heads, 1, dh)
        k, v = F.linear(x, weight[d:], bias[d:]).split(d, dim=2)
        k = k.view(b, t, self.heads, dh).transpose(1, 2)  # [B, H, L, d/H]
        v = v.view(b, t, self.heads, dh).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(dh)  # [B, H, 1, L]
        weights = scores.masked_fill(~allowed[:, None, None, :], float("-inf")).softmax(dim=-1)
        y = (weights @ v).reshape(b, d)  # [B, d]
        return self.proj(y), weights[:, :, 0]

    def forward(self, x: Tensor, mask: Tensor, need_weights: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """x [B, L, d], mask [B, 1, L, L] (True = may attend) -> ([B, L, d], [B, H, L, L]?)."""
        b, t, d = x.shape  # batch, length, hidden
        q, k, v = self.qkv(x).split(d, dim=2)
        q = q.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # [B, H, L, d/H]
        k = k.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        v = v.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        weights = None
        if need_weights:
            # Explicit softmax so the weights can be returned (inference only, no dropout).
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)  # [B, H, L, L]
            weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = weights @ v
        else:
            p = self.attn_dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(b, t, d)  # [B, L, d]
        return self.resid_dropout(self.proj(y)), weights


class FeedForward(nn.Module):
    """Position-wise two-layer MLP with GELU."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width = config.ffn_mult * config.hidden
        self.fc = nn.Linear(config.hidden, width)
        self.proj = nn.Linear(width, config.hidden)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        """[B, L, d] -> [B, L, d]."""
        return self.dropout(self.proj(self.dropout(F.gelu(self.fc(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + ffn(ln(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.hidden)
        self.ffn = FeedForward(config)

    def forward(self, x: Tensor, mask: Tensor, need_weights: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """[B, L, d] -> ([B, L, d], attention weights [B, H, L, L] when asked)."""
        a, weights = self.attn(self.ln_1(x), mask, need_weights)
        x = x + a
        x = x + self.ffn(self.ln_2(x))
        return x, weights

    def last(self, x: Tensor, allowed: Tensor) -> tuple[Tensor, Tensor]:
        """The last position only: x [B, L, d] -> ([B, d], attention weights [B, H, L])."""
        a, weights = self.attn.last(self.ln_1(x), allowed)
        y = x[:, -1] + a
        return y + self.ffn(self.ln_2(y)), weights


class SASRec(nn.Module):
    """Self-attentive sequential recommender with tied item embeddings."""

    content_tokens: Tensor  # [V + 1, T] int32 buffers of the tower's inputs, row 0 empty
    content_vector: Tensor  # [V + 1, Dv] float32
    content_has_vector: Tensor  # [V + 1] bool

    def __init__(self, config: ModelConfig, content: ContentConfig | None = None,
                 initialise: bool = True) -> None:
        """`initialise=False` leaves the item table's memory as allocated and skips
        `reset_parameters`: for a model whose every weight is loaded next (a
        checkpoint), where drawing a million-item table at random is most of the
        construction's CPU."""
        super().__init__()
        self.config = config
        embedding = nn.Embedding if initialise else functools.partial(skip_init, nn.Embedding)
        self.item_emb = embedding(config.num_items + 1, config.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, config.hidden)
        self.emb_dropout = nn.Dropout(config.emb_dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.blocks))
        self.ln_f = nn.LayerNorm(config.hidden)
        self.content_config = content
        self.content: ContentTower | None = None
        if initialise:
            self.reset_parameters()
        if content is not None:
            # Built after the rest is initialised, so the ID model draws the same random
            # numbers with or without a tower.
            self.content = ContentTower(content, config.hidden, config.init_std)
            rows = config.num_items + 1
            self.register_buffer("content_tokens",
                                 torch.zeros(rows, content.max_tokens, dtype=torch.int32))
            self.register_buffer("content_vector", torch.zeros(rows, content.vector_dim))
            self.register_buffer("content_has_vector", torch.zeros(rows, dtype=torch.bool))

    def reset_parameters(self) -> None:
        """N(0, init_std) weights, zero biases, unit norms, zero padding row.

        The default N(0, 1) embedding init makes tied logits ~d in size at step 0 and
        training crawls; a small std keeps the first softmax near uniform.
        """
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Residual projections scaled down by depth, as in GPT-2.
        for block in self.blocks:
            for proj in (block.attn.proj, block.ffn.proj):
                nn.init.normal_(proj.weight, std=std / math.sqrt(2 * self.config.blocks))
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        if self.content is not None:
            self.content.reset_parameters(std)

    def _embed(self, items: Tensor, id_mask: Tensor | None = None,
               table: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """items [B, L] -> (x [B, L, d], present [B, L], mask [B, 1, L, L])."""
        items = items[:, -self.config.max_len :]  # only the newest max_len items count
        width = items.shape[1]
        present = items > 0  # [B, L]
        pos = torch.arange(self.config.max_len - width, self.config.max_len, device=items.device)
        if table is not None:  # the caller's copy of item_embeddings() (inference)
            rows = F.embedding(items, table)
        else:
            rows = self.item_emb(items)  # [B, L, d]; padding_idx: row 0 never learns
            if self.content is not None:
                rows = self._add_content(rows, items, id_mask)
        x = self.emb_dropout(rows + self.pos_emb(pos))  # [B, L, d]
        causal = torch.ones(width, width, dtype=torch.bool, device=items.device).tril()
        # Each position may also see itself, so padding rows never softmax over nothing.
        mask = (causal & present[:, None, :]) | torch.eye(width, dtype=torch.bool,
                                                           device=items.device)
        return x, present, mask[:, None, :, :]

    def _run(self, items: Tensor, need_weights: bool, id_mask: Tensor | None = None
             ) -> tuple[Tensor, Tensor | None]:
        """items [B, L] -> (hidden [B, L, d], last block's weights [B, H, L, L] when asked)."""
        x, _, mask = self._embed(items, id_mask)
        weights = None
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            x, weights = block(x, mask, need_weights and last)
        return self.ln_f(x), weights

    def forward(self, items: Tensor, id_mask: Tensor | None = None) -> Tensor:
        """Left-padded item rows [B, L] -> hidden states [B, L, d] (position t sees <= t).

        `id_mask` [V + 1] (`id_dropout_mask`): the step's ID dropout, shared with the
        rows the loss scores against.
        """
        hidden, _ = self._run(items, need_weights=False, id_mask=id_mask)
        return hidden

    @torch.inference_mode()
    def encode(self, items: Tensor, table: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """items [B, L] -> (query [B, d], attention [B, L]).

        The attention is the last position's weights over the history in the last
        block, averaged over heads, 0 on padding; it sums to 1 over the items present.
        Equal to `forward(items)[:, -1]`, but the last block computes the last
        position only (`Block.last`): what serving needs, at a fraction of the cost.
        `table` [V + 1, d]: `item_embeddings()`, when the caller keeps it (serving), so
        a tower's rows are looked up rather than computed for every batch.
        """
        width = items.shape[1]
        x, present, mask = self._embed(items, table=table)
        for block in self.blocks[:-1]:
            x, _ = block(x, mask)
        allowed = present.clone()
        allowed[:, -1] = True  # the newest position always sees itself
        y, weights = self.blocks[-1].last(x, allowed)  # [B, d], [B, H, L']
        query = self.ln_f(y)
        attn = weights.mean(dim=1) * present  # [B, L']
        if attn.shape[1] < width:  # history longer than max_len: older items get 0
            attn = F.pad(attn, (width - attn.shape[1], 0))
        return query, attn

    def item_embeddings(self, rows: Tensor | None = None, id_mask: Tensor | None = None
                        ) -> Tensor:
        """The tied item table [V + 1, d], or only its `rows` ([...] -> [..., d]).

        Row 0 (padding) is all zeros. With a tower a row is ID + content embedding
        (items without features: ID only); `id_mask` [V + 1] zeroes the ID part where 0.
        Only the rows asked for run through the tower: a training step needs a few
        thousand of them, not the whole catalogue.
        """
        weight = self.item_emb.weight
        table = weight if rows is None else weight[rows]
        if self.content is None:
            return table
        return self._add_content(table, rows, id_mask)

    def scores(self, hidden: Tensor) -> Tensor:
        """hidden [..., d] -> scores over all rows [..., V + 1] (row 0 meaningless)."""
        return hidden @ self.item_embeddings().T

    def id_dropout_mask(self) -> Tensor | None:
        """[V + 1] float, 0 at the featured rows (a token of the feature vocabulary, or a
        vector) whose ID part this training step drops (a random `id_dropout` share of
        them); None when nothing is dropped (no tower, eval mode, id_dropout 0). Draw one
        per step and pass it to `forward` and `item_embeddings`, so an item is
        content-only in its inputs and outputs alike."""
        if self.content is None or not self.training or not self.content.config.id_dropout:
            return None
        featured = self.content.reads(self.stored_content())  # [V + 1]
        drop = torch.rand(featured.shape, device=featured.device) < self.content.config.id_dropout
        return (~(drop & featured)).to(self.item_emb.weight.dtype)

    def stored_content(self) -> ContentInputs:
        """The tower's inputs for rows 0..V (row 0, padding, has no features)."""
        if self.content is None:
            raise ConfigError("this model has no content tower, so no item features")
        return ContentInputs(self.content_tokens, self.content_vector, self.content_has_vector)

    def set_item_content(self, inputs: ContentInputs) -> None:
        """Store the features of the known items: `inputs` of rows 1..V (`featurize`)."""
        if self.content is None or self.content_config is None:
            raise ConfigError("this model has no content tower; build it with a ContentConfig")
        expected = (self.config.num_items, self.content_config.max_tokens,
                    self.content_config.vector_dim)
        got = (len(inputs), inputs.tokens.shape[1], inputs.vector.shape[1])
        if got != expected or inputs.has_vector.shape != (len(inputs),):
            raise ConfigError(f"content inputs of (items, tokens, vector dim) {got}, expected "
                              f"{expected}: featurize the vocabulary's items with this config")
        with torch.no_grad():
            self.content_tokens[1:] = inputs.tokens
            self.content_vector[1:] = inputs.vector
            self.content_has_vector[1:] = inputs.has_vector

    @torch.inference_mode()
    def content_vectors(self, inputs: ContentInputs) -> Tensor:
        """Content vectors [N, d] of any items' inputs (on the model's device): how an
        item the model never saw is placed among the items it knows. Inference only."""
        if self.content is None:
            raise ConfigError("this model has no content tower (it was trained without "
                              "--item-features): it cannot embed items by their features")
        return self.content(inputs)

    def _add_content(self, ids: Tensor, rows: Tensor | None, id_mask: Tensor | None) -> Tensor:
        """ID rows [..., d] of `rows` [...] (None: all) -> ID x id_mask + content [..., d]."""
        if self.content is None:
            return ids
        stored = self.stored_content()
        if rows is None:
            content = self.content(stored)  # [V + 1, d]
        else:
            # A batch names the same items many times: run each through the tower once.
            unique, inverse = rows.reshape(-1).unique(return_inverse=True)
            content = self.content(stored.take(unique))[inverse].view(*rows.shape, -1)
        if id_mask is not None:
            ids = ids * (id_mask if rows is None else id_mask[rows])[..., None]
        return ids + content.to(ids.dtype)
