"""Save and load a trained encoder as a directory that is safe to share.

A checkpoint is everything the worker needs to serve a model, and nothing that
runs code when read:

    config.json             format version, model version, ModelConfig, vocabulary
                            size, sha256 of every other file, training summary, metrics;
                            with a content tower also its ContentConfig ("content":
                            buckets, token limits, vector dimension, salt, tokenizer)
    model.safetensors       the weights (the tied item table is stored once); with a
                            content tower also its weights and the known items'
                            featurized inputs (`content_*` buffers, rows 0..V)
    items.json              the item vocabulary (external id -> row)
    popularity.safetensors  training counts per row [V + 1] float32, the cold-start ranking
    queries.safetensors     optional: validation histories encoded by this model [Q, d],
                            on which the worker measures an approximate index's recall
    index.faiss, index.json optional: an approximate item index built for this model
                            (index/store.py; added by `attach_files`)

Loading checks the format version, that every file config.json lists is present
and unchanged (sha256), and that every tensor has the shape the config implies; anything else is
refused with a `CheckpointError` that names the file. Nothing is ever unpickled.
The same contract for users: docs/CONTRACTS.md, "Checkpoint".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from streamrec.common.errors import ConfigError
from streamrec.common.pacing import pause
from streamrec.encoder.config import ContentConfig, ModelConfig
from streamrec.encoder.errors import CheckpointError, DataFormatError
from streamrec.encoder.model import SASRec
from streamrec.encoder.repository import resolve
from streamrec.encoder.vocab import ItemVocab

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ITEMS_FILE = "items.json"
POPULARITY_FILE = "popularity.safetensors"
QUERIES_FILE = "queries.safetensors"
HASHED_FILES = (WEIGHTS_FILE, ITEMS_FILE, POPULARITY_FILE)  # every checkpoint has these


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model in eval mode and what it was trained with."""

    model: SASRec
    config: ModelConfig
    vocab: ItemVocab
    popularity: np.ndarray  # [V + 1] float32 training counts, row 0 = 0
    model_version: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)  # training summary, metrics
    queries: np.ndarray | None = None  # [Q, d] encoded validation histories, if stored
    content: ContentConfig | None = None  # the content tower's config, if the model has one


def save_checkpoint(
    path: str | Path,
    model: SASRec,
    vocab: ItemVocab,
    popularity: np.ndarray,
    *,
    meta: dict[str, Any] | None = None,
    queries: np.ndarray | None = None,
) -> Path:
    """Write `model`, `vocab` and `popularity` as a checkpoint directory; return its path.

    `meta` (JSON-able: training data summary, metrics, train config) is stored as is;
    `queries` ([Q, d], the model's encodings of validation histories) when given.
    """
    out = Path(path)
    config = model.config
    if len(vocab) != config.num_items:
        raise CheckpointError(
            f"vocabulary has {len(vocab)} items but the model was built for "
            f"{config.num_items}; save the vocabulary the model was trained with")
    pop = np.asarray(popularity, dtype=np.float32).reshape(-1)
    if pop.shape[0] != config.num_items + 1:
        raise CheckpointError(
            f"popularity has {pop.shape[0]} rows, expected V + 1 = {config.num_items + 1}")
    out.mkdir(parents=True, exist_ok=True)
    # Weights as float32; the tower's token and mask buffers keep their integer types.
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype)
             .contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    save_file({"popularity": torch.from_numpy(pop.copy())}, str(out / POPULARITY_FILE))
    (out / ITEMS_FILE).write_text(json.dumps(vocab.to_json()), encoding="utf-8")
    names = list(HASHED_FILES)
    if queries is not None:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != config.hidden:
            raise CheckpointError(f"queries must be [Q, {config.hidden}], got {q.shape}")
        save_file({"queries": torch.from_numpy(q.copy())}, str(out / QUERIES_FILE))
        names.append(QUERIES_FILE)
    hashes = {name: _sha256(out / name) for name in names}
    version = (f"sasrec-{dt.datetime.now(dt.UTC):%Y%m%d}-{hashes[WEIGHTS_FILE][:8]}")
    doc = {
        "format_version": FORMAT_VERSION,
        "model_version": version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": config.to_dict(),
        "vocab_size": len(vocab),
        "sha256": hashes,
        "meta": meta or {},
    }
    if model.content_config is not None:
        doc["content"] = model.content_config.to_dict()
    tmp = out / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(out / CONFIG_FILE)  # config.json last: a half-written directory never loads
    logger.info("saved checkpoint %s to %s (%d items)", version, out, len(vocab))
    return out


def load_checkpoint(path: str | Path, device: str = "cpu",
                    vocab_base: ItemVocab | None = None) -> Checkpoint:
    """Load and validate a checkpoint directory (or a model repository's current
    version, `repository.resolve`); the model is in eval mode on `device`.
    `vocab_base`: the serving model's vocabulary, served as this one's when its file is
    the same, or whose lookup a vocabulary that begins with it copies (`ItemVocab`)."""
    root = resolve(path)
    doc = _read_config(root)
    unlisted = [name for name in HASHED_FILES if name not in doc["sha256"]]
    if unlisted:
        raise CheckpointError(f"{root / CONFIG_FILE} lists no sha256 for {unlisted}; "
                              "the checkpoint is incomplete")
    for name in doc["sha256"]:
        if "/" in name or "\\" in name or name.startswith("."):
            raise CheckpointError(f"{root / CONFIG_FILE} lists {name!r}: not a file name")
        file = root / name
        if not file.is_file():
            raise CheckpointError(f"{file} is missing; the checkpoint is incomplete, "
                                  "re-run `streamrec train` or copy the whole directory")
        if _sha256(file) != doc["sha256"].get(name):
            raise CheckpointError(f"{file} does not match the sha256 in {CONFIG_FILE}: "
                                  "it was modified or corrupted; restore it from the original")
    config = _model_config(root, doc)
    try:
        content = ContentConfig.from_dict(doc["content"]) if "content" in doc else None
    except (ConfigError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{root / CONFIG_FILE}: bad model config: {exc}") from exc
    if doc["vocab_size"] != config.num_items:
        raise CheckpointError(f"{root / CONFIG_FILE}: vocab_size {doc['vocab_size']} != "
                              f"model num_items {config.num_items}")
    vocab = _read_vocab(root, doc["sha256"][ITEMS_FILE], vocab_base)
    if len(vocab) != config.num_items:
        raise CheckpointError(f"{root / ITEMS_FILE} has {len(vocab)} items, config.json "
                              f"says {config.num_items}")
    model = SASRec(config, content, initialise=False)  # every weight is copied in next
    _copy_weights(model, _read_weights(root / WEIGHTS_FILE, model))
    popularity = _read_tensors(root / POPULARITY_FILE).get("popularity")
    if popularity is None or tuple(popularity.shape) != (config.num_items + 1,):
        raise CheckpointError(f"{root / POPULARITY_FILE}: expected a 'popularity' vector "
                              f"of {config.num_items + 1} rows")
    queries = None
    if QUERIES_FILE in doc["sha256"]:
        stored = _read_tensors(root / QUERIES_FILE).get("queries")
        if stored is None or stored.ndim != 2 or stored.shape[1] != config.hidden:
            raise CheckpointError(f"{root / QUERIES_FILE}: expected 'queries' [Q, "
                                  f"{config.hidden}]")
        queries = stored.numpy()
    return Checkpoint(
        model=model.to(device).eval(), config=config, vocab=vocab,
        popularity=popularity.numpy().astype(np.float32), model_version=doc["model_version"],
        path=root, meta=doc.get("meta", {}), queries=queries, content=content,
    )


def _read_vocab(root: Path, digest: str, base: ItemVocab | None) -> ItemVocab:
    """The vocabulary in `root`'s items.json, whose sha256 (checked) is `digest`.

    A file with the same sha256 as `base`'s is `base` itself (a vocabulary never
    changes): a retrain on the same catalogue. At a million items that saves the
    loader thread 0.13 s of CPU (parsing, copying the lookup, comparing the ids) and
    the process 117 MB while both versions are held (docs/BENCHMARKS.md, 2026-12-07).
    Otherwise parsed, on top of `base` when it begins with it (`ItemVocab`)."""
    if base is not None and base.digest == digest:
        return base
    try:
        vocab = ItemVocab.from_json((root / ITEMS_FILE).read_text(encoding="utf-8"), base)
    except DataFormatError as exc:
        raise CheckpointError(f"{root / ITEMS_FILE}: {exc}") from exc
    vocab.digest = digest
    return vocab


def read_model_config(path: str | Path) -> ModelConfig:
    """The model's shape from config.json alone, weights neither read nor checked: what a
    harness needs to know (e.g. the history length) about a checkpoint it hands on."""
    root = resolve(path)
    return _model_config(root, _read_config(root))


def _model_config(root: Path, doc: dict[str, Any]) -> ModelConfig:
    try:
        return ModelConfig.from_dict(doc["model"])
    except (ConfigError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{root / CONFIG_FILE}: bad model config: {exc}") from exc


def attach_files(path: str | Path, files: dict[str, bytes]) -> None:
    """Add (or replace) optional files in a checkpoint directory and list their sha256
    in config.json, which is rewritten last. Not for a checkpoint being served: a
    reader between the two writes finds a file that does not match its sha256 and
    refuses it. `streamrec train` attaches before it publishes a version."""
    root = Path(path)
    doc = _read_config(root)
    reserved = set(HASHED_FILES) | {CONFIG_FILE}
    for name, content in files.items():
        if name in reserved or "/" in name or name.startswith("."):
            raise CheckpointError(f"cannot attach {name!r} to a checkpoint")
        tmp = root / (name + ".tmp")
        tmp.write_bytes(content)
        tmp.replace(root / name)
        doc["sha256"][name] = _sha256(root / name)
    tmp = root / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(root / CONFIG_FILE)


def _read_config(root: Path) -> dict[str, Any]:
    """config.json parsed and checked for the keys and version this code understands."""
    file = root / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"{file} not found: {root} is not a streamrec checkpoint "
                              "(write one with `streamrec train --out DIR`)")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise CheckpointError(f"{file} must hold a JSON object")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{file}: checkpoint format version {version!r} is not supported "
                              f"(this streamrec reads version {FORMAT_VERSION}); retrain or "
                              "use the streamrec release that wrote it")
    missing = [k for k in ("model_version", "model", "vocab_size", "sha256") if k not in doc]
    if missing or not isinstance(doc.get("sha256"), dict):
        raise CheckpointError(f"{file} lacks {missing or ['sha256']}; it is incomplete")
    return doc


def _read_weights(file: Path, model: SASRec) -> dict[str, torch.Tensor]:
    """The tensors of `file`, checked name by name and shape by shape against `model`."""
    state = _read_tensors(file)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if set(found) != set(expected):
        missing = sorted(set(expected) - set(found))[:5]
        extra = sorted(set(found) - set(expected))[:5]
        raise CheckpointError(f"{file}: tensors do not match the model in config.json "
                              f"(missing {missing}, unexpected {extra})")
    wrong = [f"{k}: {found[k]} != {expected[k]}" for k in expected if found[k] != expected[k]]
    if wrong:
        raise CheckpointError(f"{file}: tensor shapes do not match config.json: "
                              f"{'; '.join(wrong[:5])}")
    # Token ids and masks must stay what they are: a float copy would be cast silently.
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    wrong = [f"{k}: {state[k].dtype} != {dtypes[k]}" for k in dtypes
             if not dtypes[k].is_floating_point and state[k].dtype != dtypes[k]]
    if wrong:
        raise CheckpointError(f"{file}: tensor types do not match the model: "
                              f"{'; '.join(wrong[:5])}")
    return state


COPY_PIECE = 1 << 22  # bytes of a large tensor copied per step (a 1M-item table: 64)


def _copy_weights(model: SASRec, state: dict[str, torch.Tensor]) -> None:
    """`model.load_state_dict(state)`, names and shapes checked by `_read_weights`,
    with a large tensor copied a piece at a time. The model owns its memory (the read
    tensors map the file, which must not change under a serving worker), and a paced
    loader rests between the pieces of a 256 MB item table instead of copying it in
    one call beside the poll loop."""
    own = model.state_dict()  # shares memory with the parameters and buffers
    with torch.no_grad():
        for name, source in state.items():
            target = own[name]
            row = source[0].numel() * source.element_size() if source.dim() else 0
            step = COPY_PIECE // row if row else 0
            if step < 1 or source.shape[0] <= step:
                target.copy_(source)
                continue
            for start in range(0, source.shape[0], step):
                target[start:start + step].copy_(source[start:start + step])
                pause()


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{file} is not a readable safetensors file: {exc}") from exc


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            pause()  # a paced loader rests between megabytes
    return digest.hexdigest()
