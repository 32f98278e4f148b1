"""``--device`` values: the one check every command and loader runs before any model work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from addp_agent.errors import UserError

if TYPE_CHECKING:
    import torch

KNOWN = "cpu, cuda, cuda:N, mps"


def available() -> str:
    """What this machine offers, in words (for messages)."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        found.append("cuda" if count == 1 else f"cuda:0..{count - 1}")
    if _mps_available():
        found.append("mps")
    return ", ".join(found)


def resolve_device(value: str | torch.device | None) -> torch.device:
    """The device ``value`` names (``None``: CUDA when available, else CPU), if this torch can use it.

    Unknown names (``tpu``), CUDA on a CPU-only build or without a GPU, a CUDA index past the last GPU and MPS off
    Apple silicon are one :class:`UserError` each, naming what this machine has.
    """
    import torch

    if value is None or (isinstance(value, str) and not value.strip()):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = value if isinstance(value, torch.device) else torch.device(value.strip().lower())
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"--device {value!s}: not a device name; use one of {KNOWN} (this machine: "
                        f"{available()})") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise UserError(f"--device {value!s}: {why}; use --device cpu (this machine: {available()})")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(f"--device {value!s}: there is no GPU {device.index}; this machine has {count} "
                            f"({available()})")
        return device
    if device.type == "mps" and _mps_available():
        return device
    raise UserError(f"--device {value!s}: not usable here; use one of {KNOWN} (this machine: {available()})")


def check_device(value: str | None) -> None:
    """:func:`resolve_device` for its error only (commands call it before reading any input)."""
    resolve_device(value)


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
