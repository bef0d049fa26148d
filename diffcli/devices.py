"""The one place where dtype and device names become torch settings: ``--dtype``/``--device`` on
the command line, ``dtype=``/``device=`` in Python, ``"dtype"`` in a ``run`` request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import UsageError, option

if TYPE_CHECKING:
    import torch

DTYPES = ("float64", "float32")


def dtype(name: str | torch.dtype) -> torch.dtype:
    """The torch dtype ``name`` names (a torch dtype passes through if it is one of ``DTYPES``)."""
    import torch

    found = getattr(torch, name, None) if name in DTYPES else name
    if found not in (torch.float64, torch.float32):
        raise UsageError(f"unknown {option('dtype')} {name!r}; expected {' or '.join(DTYPES)}")
    return found  # type: ignore[return-value]


def device(name: str | torch.device, dtype: torch.dtype) -> torch.device:
    """The torch device ``name`` names: auto (CUDA if there is one), cpu, cuda, cuda:N or mps, if
    this machine has it and it computes in ``dtype``."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    expected = "expected auto, cpu, cuda, cuda:N or mps"
    try:
        chosen = torch.device(name)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown {option('device')} {name!r}; {expected}") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("CUDA is not available on this machine (no GPU, or torch built without CUDA)")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise UsageError(f"there is no {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif chosen.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError("MPS is not available on this machine")
        if dtype == torch.float64:
            raise UsageError(f"MPS has no float64; use {option('dtype')} float32")
    elif chosen.type != "cpu":
        raise UsageError(f"unsupported {option('device')} {name!r}; {expected}")
    return chosen


def resolve(dtype_name: str | torch.dtype, device_name: str | torch.device) -> tuple[torch.dtype, torch.device]:
    """Both, checked: the dtype first (the device's check depends on it)."""
    chosen = dtype(dtype_name)
    return chosen, device(device_name, chosen)
