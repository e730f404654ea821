"""What `bench cold` runs (benchmarks/cold_items.py, cold_ablation.py): its options.

Kept apart from the runs, which load torch, so that the CLI's parser can show the
defaults without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamrec.bench.report import ROOT
from streamrec.common.errors import ConfigError
from streamrec.encoder.config import ContentConfig


@dataclass(frozen=True)
class ColdOptions:
    """What `bench cold` runs."""

    data: Path = ROOT / ".cache" / "movielens"  # `streamrec data movielens --out`
    data_note: str = ""  # where the folder's files came from, quoted in the report
    fraction: float = 0.15  # of the items held out
    seed: int = 42
    targets_per_user: int = 0  # cold cases per user, the last ones (0: all)
    minutes: float = 10.0  # training budget per model
    repeats: int = 3  # models of each kind, trained with seeds seed, seed + 1, ...
    content: ContentConfig = field(default_factory=ContentConfig)  # the tower's settings
    models: bool = True  # False: the baselines only
    report: bool = True  # write the JSON and the QUALITY.md section

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ConfigError(f"--repeats must be >= 1, got {self.repeats}")
