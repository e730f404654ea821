"""A model repository: versioned checkpoints and a pointer to the one to serve.

    REPO/
      CURRENT                      the version directory to serve (one line)
      sasrec-20261124-1a2b3c4d/    a checkpoint (`checkpoint.py`), never changed again
      sasrec-20261125-5e6f7a8b/

`streamrec train --out REPO` trains into a hidden directory inside the repository,
renames it to its version when it is complete and only then replaces `CURRENT`
(write a temporary file, `os.replace`): a reader sees the old version or the new
one, never a half-written checkpoint. Everything that takes a checkpoint directory
(`--model` of the worker, evaluate, bench) takes a repository too and serves its
current version (`resolve`), so a retrain publishes without moving files by hand.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from streamrec.encoder.errors import CheckpointError

logger = logging.getLogger(__name__)

CURRENT = "CURRENT"
INCOMING_PREFIX = ".incoming-"


def is_repository(path: str | Path) -> bool:
    """Whether `path` is a model repository (it has a CURRENT file)."""
    return (Path(path) / CURRENT).is_file()


def current_version(repo: str | Path) -> str:
    """The version CURRENT names; CheckpointError when it names nothing usable."""
    pointer = Path(repo) / CURRENT
    name = pointer.read_text(encoding="utf-8").strip()
    if not name or "/" in name or name.startswith("."):
        raise CheckpointError(f"{pointer} must name a version directory of {repo}, "
                              f"not {name!r}")
    if not (Path(repo) / name).is_dir():
        raise CheckpointError(f"{pointer} names {name}, which is not a directory of {repo}")
    return name


def resolve(path: str | Path) -> Path:
    """The checkpoint directory to load: a repository's current version, else `path`."""
    path = Path(path)
    return path / current_version(path) if is_repository(path) else path


def incoming(repo: str | Path) -> Path:
    """A fresh hidden directory in `repo` to train into (created with the repo)."""
    path = Path(repo) / f"{INCOMING_PREFIX}{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True)
    return path


def publish(repo: str | Path, checkpoint: str | Path, version: str) -> Path:
    """Move a complete checkpoint into `repo` as `version` and make it current.

    The rename and the replace of CURRENT are each atomic on one filesystem, and
    CURRENT changes last. A version already present gets a numbered suffix (two
    trainings in one second). Returns the version directory.
    """
    repo, checkpoint = Path(repo), Path(checkpoint)
    target = repo / version
    n = 1
    while target.exists():
        n += 1
        target = repo / f"{version}-{n}"
    os.rename(checkpoint, target)
    tmp = repo / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(target.name + "\n", encoding="utf-8")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, repo / CURRENT)
    logger.info("published %s as the current model of %s", target.name, repo)
    return target


def discard(path: str | Path) -> None:
    """Remove an incoming directory a failed training left."""
    shutil.rmtree(path, ignore_errors=True)
