"""The model: item vocabulary, data loaders, item features and the content tower, SASRec
encoder, training, evaluation, checkpoints.

Tensors in, tensors out: callers choose device and dtype. `checkpoint.py` is the
one save/load pair the worker serves from; `train.py` and `evaluate.py` are the
offline side (`streamrec train` / `streamrec evaluate`).

May import: `streamrec.common` only (never the worker, Kafka or the index).
"""
