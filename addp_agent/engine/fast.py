"""Opt-in fast path for the UNet: static-shape batch buckets, CUDA graphs captured by hand, channels_last.

``enable_fast_path(pipe)`` patches ``pipe.unet.forward`` in place (the module, its config and weights stay the same
objects, so the pipeline loop is untouched); ``disable_fast_path(pipe)`` restores it. Rows of a UNet batch are
independent (GroupNorm and attention work per sample), so padding a batch up to a bucket size and slicing the
output leaves the real rows' predictions unchanged; buckets bound the number of shapes a CUDA graph (captured by
hand, or by ``torch.compile``) is specialised to.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

logger = logging.getLogger(__name__)

DEFAULT_BUCKETS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
GRAPH_WARMUP_FORWARDS = 2  # eager forwards on a side stream before a capture (cuBLAS/cuDNN lazy init, workspaces)
GraphKey = tuple[Any, ...]  # (sample shape, sample dtype, encoder_hidden_states shape, its dtype, device)


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


def timestep_rows(timestep: Any, size: int, device: torch.device | str) -> torch.Tensor:
    """The UNet's timestep as a ``(size,)`` float32 tensor on ``device``, the layout of a graph's static input.

    A number, a 0-d or a one-element tensor (on any device) is broadcast; an ``(n,)`` tensor with ``n < size`` is
    padded with its first entry (like the padded rows of the sample). float32 gives the UNet exactly what it computes
    with: its sinusoidal projection casts the timesteps with ``.float()`` whatever dtype they arrive in.
    """
    t = timestep if isinstance(timestep, torch.Tensor) else torch.as_tensor(timestep)
    t = t.to(device=device, dtype=torch.float32)
    if t.numel() == 1:
        return t.reshape(1).expand(size)
    if t.ndim != 1 or t.shape[0] > size:
        raise ValueError(f"timestep of shape {tuple(t.shape)} does not fit a batch of {size}")
    return _pad_rows(t, size)


def _allow_recompiles(count: int) -> None:
    """Let Dynamo keep one specialisation per bucket (its default limit is 8)."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(int(getattr(config, name)), count))


def _cuda_graphs_supported(device: torch.device) -> bool:
    """Whether ``backend="graphs"`` can capture on this device (the tests patch this to run the path on CPU)."""
    return device.type == "cuda" and torch.cuda.is_available()


@dataclass
class CapturedGraph:
    """One captured UNet forward: its static inputs (copied into before each replay) and its static output."""

    graph: Any  # torch.cuda.CUDAGraph (anything with .replay())
    sample: torch.Tensor
    timestep: torch.Tensor
    encoder_hidden_states: torch.Tensor
    output: torch.Tensor


def _capture_graph(forward: Callable[..., Any], sample: torch.Tensor, timestep: torch.Tensor,
                   encoder_hidden_states: torch.Tensor, state: FastPath) -> CapturedGraph:
    """Capture ``forward(sample, timestep, encoder_hidden_states, return_dict=False)[0]`` into a CUDA graph.

    The standard recipe: static inputs on the device, a few eager warm-up forwards on a side stream, capture into
    the memory pool that all of ``state``'s graphs share, then one replay checked against the last eager forward
    (same inputs), so a capture that records something other than what eager computes is refused instead of used.
    """
    device = sample.device
    if state.pool is None:
        state.pool = torch.cuda.graph_pool_handle()
    if state.stream is None or state.stream.device != device:
        state.stream = torch.cuda.Stream(device)
    stream, current = state.stream, torch.cuda.current_stream(device)
    # no_grad, and plain tensors even inside inference_mode, so later calls in either mode may copy into them
    with torch.cuda.device(device), torch.inference_mode(False), torch.no_grad():
        inputs = (sample.clone(), timestep.clone(), encoder_hidden_states.clone())
        stream.wait_stream(current)
        with torch.cuda.stream(stream):
            for _ in range(GRAPH_WARMUP_FORWARDS):
                reference = forward(*inputs, return_dict=False)[0]
        current.wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=state.pool, capture_error_mode="thread_local"):
                output = forward(*inputs, return_dict=False)[0]
        finally:
            torch.cuda.set_stream(current)  # a failing capture_end leaves torch.cuda.graph's capture stream current
        graph.replay()
        _check_replay(output, reference)
    return CapturedGraph(graph, *inputs, output)


def _check_replay(output: torch.Tensor, reference: torch.Tensor) -> None:
    """Raise unless a replay's output matches eager's on the same inputs (same non-finite entries, |Δ| ≤ 1 %)."""
    out, ref = output.float(), reference.float()
    finite = torch.isfinite(ref)
    if not bool((finite == torch.isfinite(out)).all()):
        raise RuntimeError("the captured graph's output has non-finite values where eager's has none (or vice versa)")
    diff = float(torch.where(finite, out - ref, 0.0).abs().max())
    scale = float(torch.where(finite, ref, 0.0).abs().max())
    if not math.isfinite(diff) or diff > 1e-2 * max(1.0, scale):
        raise RuntimeError(f"the captured graph's output differs from eager by {diff:.3g} (scale {scale:.3g})")


def _describe(error: BaseException) -> str:
    """``repr(error)``, plus the error it was raised while handling (capture_end masks the original failure)."""
    cause = error.__cause__ or error.__context__
    return repr(error) if cause is None else f"{error!r} (while handling {cause!r})"


@dataclass
class FastPath:
    """What :func:`enable_fast_path` did to a UNet (kept on ``unet._addp_fast_path``)."""

    original_forward: Callable[..., Any]
    compiled: bool
    mode: str | None
    backend: str
    channels_last: bool
    buckets: tuple[int, ...] | None
    graphs: bool = False  # CUDA graphs captured by hand (backend="graphs" on CUDA)
    calls: int = 0
    padded_rows: int = 0
    graphs_captured: int = 0
    graph_replays: int = 0
    graph_fallbacks: int = 0  # calls run eager although graphs were on (extra kwargs, grad, a refused shape)
    capture_seconds: float = 0.0
    capture_failures: dict[GraphKey, str] = field(default_factory=dict)
    cached_graphs: dict[GraphKey, CapturedGraph] = field(default_factory=dict, repr=False, compare=False)
    pool: Any = field(default=None, repr=False, compare=False)
    stream: Any = field(default=None, repr=False, compare=False)
    weights_id: int | None = field(default=None, repr=False, compare=False)
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    def release_graphs(self) -> None:
        """Drop every captured graph (and, with the last reference, the shared memory pool)."""
        self.cached_graphs.clear()
        self.pool = None


def enable_fast_path(pipe: Any, compile: bool | None = None, mode: str | None = None, backend: str | None = None,
                     channels_last: bool | None = None, buckets: Sequence[int] | None | bool = None) -> FastPath:
    """Speed up ``pipe.unet`` for repeated calls; returns what was enabled.

    Defaults by device: CUDA → ``backend="graphs"``: one CUDA graph per batch bucket, captured by hand on first use
    (no torch.compile, no TorchDynamo), static shapes via batch buckets, channels_last. A capture costs about three
    forwards (two warm-ups and the capture) per bucket, where inductor spends minutes compiling an SD-1.5-size UNet
    per shape, which a short GPU session cannot afford. A shape whose capture fails runs eager (the reason is kept
    in ``capture_failures``), as do calls with extra UNet arguments (``added_cond_kwargs``, ...) or with grad on.
    CPU → nothing: on the 2-core benchmark machine inductor took ~6 minutes to compile the bundled UNet and ran no
    faster, and channels_last measured 0.93–0.99× (see docs/performance.md); pass ``compile=True`` /
    ``channels_last=True`` to try them (``backend="graphs"`` on CPU only pads to buckets when asked to).

    torch.compile stays available: ``compile=True`` (inductor, ``mode="reduce-overhead"`` on CUDA, i.e. CUDA graphs
    after code generation), ``backend="cudagraphs"`` (Dynamo capture into CUDA graphs without code generation) or
    ``backend="eager"`` (Dynamo without code generation, used by the tests on CPU). ``backend="graphs"`` never
    compiles, whatever ``compile`` says.
    """
    unet = pipe.unet
    if getattr(unet, "_addp_fast_path", None) is not None:
        disable_fast_path(pipe)
    state = _resolve_options(unet, compile, mode, backend, channels_last, buckets)
    if state.compiled and state.buckets:
        _allow_recompiles(len(state.buckets) + 4)
    if state.channels_last:
        unet.to(memory_format=torch.channels_last)
    unet.forward = FastForward(unet, state)
    unet._addp_fast_path = state
    return state


def _resolve_options(unet: Any, compile: bool | None, mode: str | None, backend: str | None,
                     channels_last: bool | None, buckets: Sequence[int] | None | bool) -> FastPath:
    """The device defaults applied to what the caller asked for (see :func:`enable_fast_path`)."""
    cuda = unet.device.type == "cuda"
    if backend is None:
        backend = "graphs" if cuda and compile is None else "inductor"
    graphs = backend == "graphs" and _cuda_graphs_supported(unet.device)
    compile = False if backend == "graphs" else (cuda if compile is None else bool(compile))
    if buckets is None or buckets is True:
        bucket_sizes = DEFAULT_BUCKETS if (compile or graphs or buckets is True) else None
    else:
        bucket_sizes = tuple(buckets) if buckets else None
    if compile and mode is None and cuda and backend == "inductor":
        mode = "reduce-overhead"
    return FastPath(original_forward=unet.forward, compiled=bool(compile), mode=mode, backend=backend,
                    channels_last=bool(cuda if channels_last is None else channels_last), buckets=bucket_sizes,
                    graphs=graphs)


class FastForward:
    """The ``unet.forward`` that :func:`enable_fast_path` installs: pad the batch to its bucket, then replay the
    bucket's CUDA graph or run the (compiled) original forward, and return the real rows."""

    def __init__(self, unet: Any, state: FastPath) -> None:
        self.unet, self.state = unet, state
        original = state.original_forward  # the bound method of the class
        options: dict[str, Any] = {"mode": state.mode} if state.backend == "inductor" else {}
        self.inner = torch.compile(original, backend=state.backend, dynamic=False, **options) if state.compiled \
            else original
        self.compiled_graphs = state.compiled and unet.device.type == "cuda" and (
            state.backend == "cudagraphs" or "reduce-overhead" in (state.mode or ""))

    def __call__(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, *args: Any,
                 **kwargs: Any) -> Any:
        state = self.state
        state.calls += 1
        n = sample.shape[0]
        if state.buckets is not None:
            size = bucket_size(n, state.buckets)
            state.padded_rows += size - n
            sample = _pad_rows(sample, size)
            encoder_hidden_states = _pad_rows(encoder_hidden_states, size)
            timestep = _pad_rows(timestep, size)
        if state.channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last)
        if state.graphs:
            return_dict = kwargs.get("return_dict", True)
            extra = [value for name, value in kwargs.items() if name != "return_dict"] + list(args)
            output = None
            if not torch.is_grad_enabled() and all(value is None for value in extra):
                output = self.replay(sample, timestep, encoder_hidden_states, n)
            if output is not None:
                return UNet2DConditionOutput(sample=output) if return_dict else (output,)
            state.graph_fallbacks += 1
        if self.compiled_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # each step's outputs are consumed before the next call
        output = self.inner(sample, timestep, encoder_hidden_states, *args, **kwargs)
        if state.buckets is None or sample.shape[0] == n:
            return output
        if isinstance(output, tuple):
            return (output[0][:n], *output[1:])
        output.sample = output.sample[:n]
        return output

    def replay(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: Any, n: int) -> torch.Tensor | None:
        """The first ``n`` rows of the captured graph's output for these inputs; None → run eager instead."""
        if not isinstance(encoder_hidden_states, torch.Tensor) or encoder_hidden_states.shape[0] != sample.shape[0]:
            return None
        if sample.is_cuda and torch.cuda.is_current_stream_capturing():
            return None  # inside someone else's capture: let it record the eager kernels
        key: GraphKey = (tuple(sample.shape), str(sample.dtype), tuple(encoder_hidden_states.shape),
                         str(encoder_hidden_states.dtype), str(sample.device))
        if key in self.state.capture_failures:
            return None
        try:
            t = timestep_rows(timestep, sample.shape[0], sample.device)
        except (TypeError, ValueError, RuntimeError):
            return None
        state = self.state
        with state.lock:
            captured = self._graph(key, sample, t, encoder_hidden_states)
            if captured is None:
                return None
            captured.sample.copy_(sample)
            captured.timestep.copy_(t)
            captured.encoder_hidden_states.copy_(encoder_hidden_states)
            captured.graph.replay()
            state.graph_replays += 1
            return captured.output[:n].clone()  # the next replay overwrites the static output

    def _graph(self, key: GraphKey, sample: torch.Tensor, t: torch.Tensor,
               encoder_hidden_states: torch.Tensor) -> CapturedGraph | None:
        """The graph for ``key``, captured now if needed (the caller holds the lock); None if the capture failed."""
        state = self.state
        weights_id = next(self.unet.parameters()).data_ptr()
        if weights_id != state.weights_id:  # moved or re-cast weights: graphs would read the old storage
            state.release_graphs()
            state.weights_id = weights_id
        captured = state.cached_graphs.get(key)
        if captured is not None:
            return captured
        start = time.perf_counter()
        try:
            captured = _capture_graph(state.original_forward, sample, t, encoder_hidden_states, state)
        except Exception as error:  # any failure means: this shape runs eager
            state.capture_failures[key] = _describe(error)
            message = f"CUDA graph capture failed for UNet inputs {key}; running them eager: {_describe(error)}"
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=4)
            return None
        finally:
            state.capture_seconds += time.perf_counter() - start
        state.cached_graphs[key] = captured
        state.graphs_captured += 1
        return captured


def disable_fast_path(pipe: Any) -> None:
    """Undo :func:`enable_fast_path` (restores the class forward and the contiguous memory format, frees graphs)."""
    unet = pipe.unet
    state: FastPath | None = getattr(unet, "_addp_fast_path", None)
    if state is None:
        return
    del unet.forward
    state.release_graphs()
    if state.channels_last:
        unet.to(memory_format=torch.contiguous_format)
    unet._addp_fast_path = None
