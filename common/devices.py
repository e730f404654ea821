"""Which torch device a `--device` value means, decided in one place.

`auto` is CUDA when torch sees a GPU, else the CPU; anything else is passed to
torch, and a name torch does not know is refused as a configuration error.
"""

from __future__ import annotations

import numpy as np
import torch

from streamrec.common.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; other names as torch reads them."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}: {exc}") from exc


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A float tensor as a float32 array; a CPU float32 one without an operator call.

    Every torch operator called from Python lets go of the GIL and takes it back, and
    taking it back can wait a whole switch interval while another thread runs Python
    (the worker's Kafka loop beside its model thread): `.float().cpu()` on a tensor that
    is already both is two such waits for nothing. Integer tensors keep their dtype.
    """
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if tensor.is_floating_point() and tensor.dtype != torch.float32:
        tensor = tensor.float()
    return tensor.numpy()


def from_numpy(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """An array as a tensor on `device`; on the CPU sharing its memory, no operator call
    (see `to_numpy`)."""
    if device.type == "cpu":
        array = np.ascontiguousarray(array)
        return torch.from_numpy(array if array.flags.writeable else array.copy())
    return torch.as_tensor(array, device=device)


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX tiles): there a
    bfloat16 matmul runs several times faster than float32; elsewhere torch emulates
    it, slower. Asked of torch's own CPU probe (a private API: False where it is gone)."""
    cpu = getattr(torch, "cpu", None)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(bool(getattr(cpu, name)()) for name in probes if hasattr(cpu, name))
    except RuntimeError:
        return False
