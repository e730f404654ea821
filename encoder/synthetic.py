"""A structured synthetic interaction log whose right answers a person can read.

Items are named after music genres and grouped in clusters (`jazz-07`, `rock-12`).
Each user follows one or two clusters and walks each cluster's items in order,
with noise: sometimes an item is skipped, sometimes the walk jumps to a random
item of the cluster, and users with two clusters switch between them. The next
item is therefore mostly predictable ("after jazz-07 comes jazz-08") but not
trivially so, which makes the log a fast end-to-end check for the demo and tests:
a working encoder learns the rule in seconds, a popularity ranking cannot.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from streamrec.common.errors import ConfigError

logger = logging.getLogger(__name__)

GENRES = (
    "jazz", "rock", "pop", "folk", "blues", "metal", "soul", "punk", "disco", "house",
    "techno", "reggae", "salsa", "tango", "swing", "opera", "gospel", "funk", "grunge",
    "ska", "samba", "polka", "trance", "dub",
)


def item_name(cluster: int, index: int) -> str:
    """`jazz-07`; clusters beyond the genre list get a numeric suffix (`jazz2-07`)."""
    genre = GENRES[cluster % len(GENRES)]
    lap = cluster // len(GENRES)
    return f"{genre}{lap + 1 if lap else ''}-{index:02d}"


def generate(
    num_users: int,
    items_per_cluster: int = 20,
    clusters: int = 8,
    seed: int = 0,
    *,
    min_len: int = 5,
    max_len: int = 20,
    skip: float = 0.1,
    jump: float = 0.05,
    switch: float = 0.1,
) -> list[tuple[str, str]]:
    """(user_id, item_id) pairs, each user's pairs in time order, users one after another.

    Per step a user moves to the next item of the current cluster, or with
    probability `skip` the one after it, with `jump` a random item of the cluster,
    and (users with two clusters) with `switch` continues in the other cluster where
    they left it. Walks wrap around at the end of a cluster.
    """
    if num_users < 1 or items_per_cluster < 2 or clusters < 1 or not 1 <= min_len <= max_len:
        raise ConfigError("generate needs num_users >= 1, items_per_cluster >= 2, "
                          "clusters >= 1 and 1 <= min_len <= max_len")
    if skip + jump > 1 or not 0 <= switch <= 1:
        raise ConfigError("skip + jump must be <= 1 and switch in [0, 1]")
    rng = np.random.default_rng(seed)
    pairs: list[tuple[str, str]] = []
    for u in range(num_users):
        user = f"user-{u:05d}"
        own = rng.choice(clusters, size=min(clusters, 1 + int(rng.random() < 0.5)),
                         replace=False)
        where = {int(c): int(rng.integers(items_per_cluster)) for c in own}
        current = int(own[0])
        for _ in range(int(rng.integers(min_len, max_len + 1))):
            pairs.append((user, item_name(current, where[current])))
            r = rng.random()
            if r >= 1 - jump:
                where[current] = int(rng.integers(items_per_cluster))
            else:
                where[current] = (where[current] + (2 if r < skip else 1)) % items_per_cluster
            if len(own) > 1 and rng.random() < switch:  # the other cluster resumes
                current = int(own[1]) if current == int(own[0]) else int(own[0])
    logger.debug("generated %d interactions for %d users", len(pairs), num_users)
    return pairs


def write_sasrec(path: str | Path, pairs: list[tuple[str, str]]) -> Path:
    """Write `pairs` as `user item` lines (the SASRec text format); return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        fh.writelines(f"{user} {item}\n" for user, item in pairs)
    return out
