"""An approximate index stored beside the model it indexes.

Training an IVF quantizer over a million items takes tens of seconds of CPU; a
worker that did it at every start or hot swap would stall. So `streamrec train`
(or `streamrec index build`) builds the index once and writes two files into the
checkpoint directory:

    index.faiss   the CPU index in FAISS's own binary format (`faiss.write_index`;
                  read by FAISS's C++ reader, never unpickled)
    index.json    kind, build and search parameters (an IVF nprobe chosen at build
                  for its recall on the checkpoint's queries, unless one was asked,
                  with the candidates re-scored `rescore` times over),
                  sha256 of the item table it indexes, FAISS version, build seconds,
                  recall@10 measured at build, and which query sample the third file
                  answers
    index.truth.safetensors  the exact top 10 rows of those queries over the table
                  (index/truth.py): a loader measures the index's recall against it
                  instead of scoring every item again

`load_stored` gives the stored index back when it is of the kind asked for, built
with the asked build parameters and over this very item table (with the stored exact
answer, when there is one); otherwise it says why not and the caller builds one.
The checkpoint's config.json lists every file's sha256 (encoder/checkpoint.py checks
them), so a changed file refuses to load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.common.pacing import pause
from streamrec.index.ann import AnnIndex
from streamrec.index.errors import IndexBuildError
from streamrec.index.params import DEFAULT_NPROBE, AnnParams
from streamrec.index.truth import RecallTruth

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
META_FILE = "index.json"
TRUTH_FILE = "index.truth.safetensors"
BUILD_FIELDS = ("nlist", "hnsw_m", "pq_m")  # a stored index answers only these as built


DIGEST_PIECE = 1 << 22  # bytes hashed per call (~6 ms): hashlib lets the GIL go meanwhile


def table_digest(embeddings: np.ndarray) -> str:
    """sha256 of the float32 item table: which table a stored index was built over.

    Hashed from the array's own memory in pieces, never copied to one bytes object:
    a million-item table is 256 MB, whose copy held the GIL (and so a worker's poll
    loop, when a loader thread checks a new version) for 160 ms or more."""
    table = np.ascontiguousarray(embeddings, dtype=np.float32)
    view = memoryview(table).cast("B")
    digest = hashlib.sha256()
    for start in range(0, len(view), DIGEST_PIECE):
        digest.update(view[start:start + DIGEST_PIECE])
        pause()  # a paced loader rests between pieces
    return digest.hexdigest()


def index_files(index: AnnIndex, embeddings: np.ndarray, recall: float | None,
                truth: RecallTruth | None = None) -> dict[str, bytes]:
    """The files that store `index` (name -> content), for the checkpoint; with
    `truth`, the exact answer of the query sample its recall was measured on."""
    import faiss
    from safetensors.numpy import save

    meta: dict[str, Any] = {
        "kind": index.kind,
        "params": dataclasses.asdict(index.params),
        "table_sha256": table_digest(embeddings),
        "rows": index.num_rows,
        "dim": index.dim,
        "faiss_version": faiss.__version__,
        "build_seconds": round(index.build_s, 3),
        "recall_at_10": None if recall is None else round(recall, 4),
        # True: `params.nprobe` was chosen here for the recall (no --nprobe was asked)
        "nprobe_tuned": index.chooses_nprobe,
    }
    files = {INDEX_FILE: index.serialized().tobytes()}
    if truth is not None:
        meta["truth"] = {"file": TRUTH_FILE, "queries": len(truth.rows), "k": truth.k,
                         "queries_sha256": truth.queries_sha256}
        files[TRUTH_FILE] = save({"rows": np.ascontiguousarray(truth.rows, dtype=np.int64)})
    files[META_FILE] = json.dumps(meta, indent=2, sort_keys=True).encode()
    return files


def load_stored(directory: Path, embeddings: np.ndarray, kind: str, params: AnnParams,
                device: str = "auto") -> tuple[AnnIndex | None, str]:
    """(the stored index, "") when `directory` holds one that fits; else (None, why)."""
    meta_file, data_file = directory / META_FILE, directory / INDEX_FILE
    if not meta_file.is_file() or not data_file.is_file():
        return None, "the checkpoint stores no index"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        stored = AnnParams(**meta["params"])
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"{meta_file} is unreadable ({exc})"
    if meta.get("kind") != kind:
        return None, f"the stored index is {meta.get('kind')!r}, {kind!r} was asked for"
    asked = params.resolved(embeddings.shape[0] - 1, embeddings.shape[1], kind)
    differs = [f"{f} {getattr(stored, f)} (asked {getattr(asked, f)})" for f in BUILD_FIELDS
               if getattr(params, f) and getattr(stored, f) != getattr(asked, f)]
    if differs:
        return None, f"the stored index was built with {', '.join(differs)}"
    if meta.get("table_sha256") != table_digest(embeddings):
        return None, "the stored index was built over another item table"
    # Build parameters as stored; search parameters as asked now. --nprobe 0: the nprobe
    # the build chose for its recall when it chose one with the candidates re-scored as
    # now (an index.json older than re-scoring has no `rescore`: its breadth was chosen
    # for the codes' own scores), else today's default, widened at load.
    tuned = meta.get("nprobe_tuned") is True and stored.rescore == asked.rescore
    nprobe = params.nprobe or (stored.nprobe if tuned else DEFAULT_NPROBE)
    serve = dataclasses.replace(stored, nprobe=min(stored.nlist, nprobe),
                                ef_search=params.ef_search, rescore=asked.rescore)
    try:
        index = AnnIndex.from_file(embeddings, kind, serve, data_file, device=device)
    except (RuntimeError, IndexBuildError) as exc:  # FAISS raises RuntimeError on bad bytes
        return None, f"{data_file} could not be read ({exc})"
    index.nprobe_asked = params.nprobe > 0  # --nprobe 0: it may still widen at load
    if isinstance(meta.get("build_seconds"), (int, float)):
        index.build_s = float(meta["build_seconds"])  # what building it took, not reading
    index.truth = _read_truth(directory, meta.get("truth"), embeddings.shape[0] - 1)
    return index, ""


def _read_truth(directory: Path, about: object, items: int) -> RecallTruth | None:
    """The stored exact answer index.json describes, or None (older checkpoints have
    none; a loader then computes it). Rows outside 1..`items` are refused."""
    if not isinstance(about, dict):
        return None
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    file = directory / TRUTH_FILE
    try:
        rows = load_file(str(file))["rows"]
        truth = RecallTruth(rows, str(about["queries_sha256"]))
    except (OSError, KeyError, SafetensorError) as exc:
        logger.warning("%s is unreadable (%s); recall is measured against exact search", file,
                       exc)
        return None
    if (rows.dtype != np.int64 or rows.ndim != 2 or len(rows) != about.get("queries")
            or truth.k != about.get("k") or rows.min(initial=1) < 1
            or rows.max(initial=1) > items):
        logger.warning("%s does not hold the %s x %s rows in 1..%d that %s describes; recall "
                       "is measured against exact search", file, about.get("queries"),
                       about.get("k"), items, META_FILE)
        return None
    return truth
