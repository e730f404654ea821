"""The results table: model and baselines side by side, for people and for machines.

`format_table` renders what `evaluate_scorers` returns (name -> protocol ->
Metrics) as a fixed-width terminal table, full ranking first because that is
the number that matters in production, the sampled-100 columns after it for
comparison with the SASRec paper. `results_to_dict` is the same content as plain
JSON types for `--json` and for the training run's summary file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from streamrec.encoder.evaluate import Metrics

logger = logging.getLogger(__name__)

# (protocol, metric, k) per column; k = None for MRR.
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("full", "HR", 10),
    ("full", "NDCG", 10),
    ("full", "HR", 20),
    ("full", "NDCG", 20),
    ("full", "MRR", None),
    ("sampled", "HR", 10),
    ("sampled", "NDCG", 10),
)
_CELL = 9


def _value(metrics: Mapping[str, Metrics], protocol: str, metric: str, k: int | None) -> str:
    m = metrics.get(protocol)
    if m is None:
        return "-"
    if metric == "MRR":
        return f"{m.mrr:.4f}"
    table = m.hr if metric == "HR" else m.ndcg
    return f"{table[k]:.4f}" if k in table else "-"


def format_table(
    results: Mapping[str, Mapping[str, Metrics]], notes: Sequence[str] = ()
) -> str:
    """A fixed-width table, one row per scorer, then `notes` (one line each)."""
    name_width = max([len("model"), *(len(n) for n in results)]) + 2
    full_cols = sum(1 for c in COLUMNS if c[0] == "full")
    sampled_cols = len(COLUMNS) - full_cols
    group = (
        " " * name_width
        + "full ranking".center(full_cols * _CELL)
        + " | "
        + "sampled-100".center(sampled_cols * _CELL)
    )
    labels = [metric if k is None else f"{metric}@{k}" for _, metric, k in COLUMNS]
    header = "model".ljust(name_width) + _cells(labels, full_cols)
    lines = [group.rstrip(), header, "-" * len(header)]
    for name, metrics in results.items():
        values = [_value(metrics, p, m, k) for p, m, k in COLUMNS]
        lines.append(name.ljust(name_width) + _cells(values, full_cols))
    users = sorted({m.users for metrics in results.values() for m in metrics.values()})
    if users:
        lines.append(f"users evaluated: {', '.join(f'{u:,}' for u in users)}")
    lines.extend(notes)
    return "\n".join(lines)


def _cells(values: Sequence[str], split_after: int) -> str:
    left = "".join(v.rjust(_CELL) for v in values[:split_after])
    right = "".join(v.rjust(_CELL) for v in values[split_after:])
    return f"{left} | {right}"


def results_to_dict(
    results: Mapping[str, Mapping[str, Metrics]], meta: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`{"results": {name: {protocol: {...metrics}}}, **meta}` with plain JSON types."""
    out: dict[str, Any] = dict(meta or {})
    out["results"] = {
        name: {protocol: m.as_dict() for protocol, m in metrics.items()}
        for name, metrics in results.items()
    }
    return out
