"""Errors of the encoder package: bad training data, bad checkpoints, failed training."""

from __future__ import annotations

from streamrec.common.errors import StreamrecError


class EncoderError(StreamrecError):
    """Base class of encoder errors."""


class DataFormatError(EncoderError):
    """An interaction log could not be read in the format asked for."""


class CheckpointError(EncoderError):
    """A checkpoint directory is missing, incomplete, tampered with or of another version."""


class TrainingError(EncoderError):
    """Training could not start or diverged."""
