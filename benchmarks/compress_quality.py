"""The quality side of `bench compress` in docs/QUALITY.md.

`bench compress` keeps its quality figures in docs/bench/compress-quality.json and
writes this section into QUALITY.md; `quality_games.py`, which regenerates that file
from a training run, puts the same section back from the same JSON, so neither
script drops the other's part. No torch here: rendering needs none.
"""

from __future__ import annotations

from pathlib import Path

from streamrec.bench import report

QUALITY_JSON = "bench/compress-quality.json"  # under docs/ (report.DOCS)
HEADING = "## Quantization and pruning"
BEFORE = "\n## How the configuration was chosen"  # the section goes before this one


def render(doc: dict) -> str:
    """The markdown section of `doc` (what `bench compress` saved)."""
    rows = "\n".join(f"| {r['lever']} | {r['variant']} | {r['hr']:.4f} | {r['ndcg']:.4f} | "
                     f"{r['loss_pct']:+.1f}% | {r['note']} |" for r in doc["rows"])
    return f"""
{HEADING}

Measured by `streamrec bench compress` ({doc['date']}; {doc['machine']}): the trained
games model with one lever pulled, full-ranking HR@10 / NDCG@10 on the test split
({doc['users']:,} users) through the variant's own search, against float32 exact
search. Speed and memory of the same variants: docs/BENCHMARKS.md ("bench
compress"). A lever becomes a default only at >= 1.3x the model stage's speed and
<= 1% loss of NDCG@10; what was adopted, and why the rest was not, is under that
section.

| lever | variant | HR@10 | NDCG@10 | NDCG@10 vs float32 | note |
|---|---|---|---|---|---|
{rows}
"""


def with_compression_section(text: str, path: Path | None = None) -> str:
    """`text` (QUALITY.md) with the section from `path` (default: docs' JSON) in place
    of any older one; `text` unchanged when nothing was measured."""
    return report.put_json_section(text, path or report.DOCS / QUALITY_JSON, render,
                                   HEADING, BEFORE)


def save(doc: dict) -> Path:
    """Keep `doc` as JSON under docs/ and write its section into QUALITY.md there."""
    return report.save_quality_section(doc, QUALITY_JSON, with_compression_section)
