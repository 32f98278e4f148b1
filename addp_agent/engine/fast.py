"""Opt-in fast path for the UNet: static-shape batch buckets, ``torch.compile`` (CUDA graphs on GPU), channels_last.

``enable_fast_path(pipe)`` patches ``pipe.unet.forward`` in place (the module, its config and weights stay the same
objects, so the pipeline loop is untouched); ``disable_fast_path(pipe)`` restores it. Rows of a UNet batch are
independent (GroupNorm and attention work per sample), so padding a batch up to a bucket size and slicing the
output leaves the real rows' predictions unchanged; buckets bound the number of shapes a compiled graph (and a
captured CUDA graph) is specialised to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

DEFAULT_BUCKETS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def bucket_size(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket ≥ n; beyond the largest, the next multiple of it."""
    for size in sorted(buckets):
        if size >= n:
            return size
    largest = max(buckets)
    return -(-n // largest) * largest


def _pad_rows(tensor: Any, size: int) -> Any:
    """Repeat the first row until ``tensor`` has ``size`` rows (non-batched values pass through)."""
    if not isinstance(tensor, torch.Tensor) or tensor.ndim == 0 or tensor.shape[0] >= size:
        return tensor
    filler = tensor[:1].expand(size - tensor.shape[0], *tensor.shape[1:])
    return torch.cat([tensor, filler])


def _allow_recompiles(count: int) -> None:
    """Let Dynamo keep one specialisation per bucket (its default limit is 8)."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(int(getattr(config, name)), count))


@dataclass
class FastPath:
    """What :func:`enable_fast_path` did to a UNet (kept on ``unet._addp_fast_path``)."""

    original_forward: Callable[..., Any]
    compiled: bool
    mode: str | None
    backend: str
    channels_last: bool
    buckets: tuple[int, ...] | None
    calls: int = 0
    padded_rows: int = 0


def enable_fast_path(pipe: Any, compile: bool | None = None, mode: str | None = None, backend: str = "inductor",
                     channels_last: bool | None = None, buckets: Sequence[int] | None | bool = None) -> FastPath:
    """Speed up ``pipe.unet`` for repeated calls; returns what was enabled.

    Defaults by device: CUDA → ``torch.compile(mode="reduce-overhead")`` (CUDA graphs), static shapes via batch
    buckets, channels_last. CPU → nothing: on the 2-core benchmark machine inductor took ~6 minutes to compile the
    bundled UNet and ran no faster, and channels_last measured 0.93–0.99× (see docs/performance.md); pass
    ``compile=True`` / ``channels_last=True`` to try them. ``backend="cudagraphs"`` captures CUDA graphs without
    inductor's code generation (seconds to compile instead of minutes); ``backend="eager"`` runs the same wrapper
    through TorchDynamo without code generation (used by the tests on CPU).
    """
    unet = pipe.unet
    if getattr(unet, "_addp_fast_path", None) is not None:
        disable_fast_path(pipe)
    cuda = unet.device.type == "cuda"
    compile = cuda if compile is None else compile
    channels_last = cuda if channels_last is None else channels_last
    if buckets is None or buckets is True:
        bucket_sizes = DEFAULT_BUCKETS if compile else None
    else:
        bucket_sizes = tuple(buckets) if buckets else None
    if compile and mode is None and cuda and backend == "inductor":
        mode = "reduce-overhead"
    if compile and bucket_sizes:
        _allow_recompiles(len(bucket_sizes) + 4)
    if channels_last:
        unet.to(memory_format=torch.channels_last)
    original = unet.forward  # the bound method of the class
    options: dict[str, Any] = {"mode": mode} if backend == "inductor" else {}
    inner = torch.compile(original, backend=backend, dynamic=False, **options) if compile else original
    graphs = bool(compile) and cuda and (backend == "cudagraphs" or "reduce-overhead" in (mode or ""))
    state = FastPath(original_forward=original, compiled=bool(compile), mode=mode, backend=backend,
                     channels_last=bool(channels_last), buckets=bucket_sizes)

    def forward(sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, *args: Any,
                **kwargs: Any) -> Any:
        state.calls += 1
        n = sample.shape[0]
        if bucket_sizes is not None:
            size = bucket_size(n, bucket_sizes)
            state.padded_rows += size - n
            sample = _pad_rows(sample, size)
            encoder_hidden_states = _pad_rows(encoder_hidden_states, size)
            timestep = _pad_rows(timestep, size)
        if channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last)
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()  # each step's outputs are consumed before the next call
        output = inner(sample, timestep, encoder_hidden_states, *args, **kwargs)
        if bucket_sizes is None or sample.shape[0] == n:
            return output
        if isinstance(output, tuple):
            return (output[0][:n], *output[1:])
        output.sample = output.sample[:n]
        return output

    unet.forward = forward
    unet._addp_fast_path = state
    return state


def disable_fast_path(pipe: Any) -> None:
    """Undo :func:`enable_fast_path` (restores the class forward and the contiguous memory format)."""
    unet = pipe.unet
    state: FastPath | None = getattr(unet, "_addp_fast_path", None)
    if state is None:
        return
    del unet.forward
    if state.channels_last:
        unet.to(memory_format=torch.contiguous_format)
    unet._addp_fast_path = None
