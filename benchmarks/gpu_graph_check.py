"""GPU self-check of the hand-captured CUDA graphs: ``python -m benchmarks.gpu_graph_check [steps]``.

SD-1.5-size InstructPix2Pix, 256 px, fp16, random weights: 3 rounds (0, 1, 2 corrections: 3, 4, 5 rows → buckets 3,
4, 6) eager, then with the graphs fast path (both channels_last). Prints one JSON line: max |Δ| of the painted outputs
per round (rounds 0 and 1 run unpadded), one timed round each, the capture counters. No CUDA: a skip line, exit 0.
"""

import json
import sys
import time

import numpy as np
import torch

from addp_agent.engine.fast import enable_fast_path
from benchmarks.models import sd15_instruct_pix2pix
from benchmarks.suite import CORRECTIONS, engine_round, sample_images

if not torch.cuda.is_available():
    print(json.dumps({"check": "gpu_graph_check", "skipped": "no CUDA device"}))
    sys.exit(0)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
pipe, _ = sd15_instruct_pix2pix(256, torch.device("cuda"), torch.float16)
pipe.set_progress_bar_config(disable=True)
image = sample_images(pipe, 1)[0]
result: dict = {"check": "gpu_graph_check", "device": torch.cuda.get_device_name(), "steps": steps}
outputs = {}
for name, backend in (("eager", "inductor"), ("graphs", "graphs")):  # compile=False: inductor is never used
    state = enable_fast_path(pipe, compile=False if name == "eager" else None, backend=backend, channels_last=True)
    outputs[name] = [engine_round(pipe, image, steps, 0, CORRECTIONS[:r]) for r in range(3)]  # warm-up, captures
    torch.cuda.synchronize()
    start = time.perf_counter()
    engine_round(pipe, image, steps, 0)
    torch.cuda.synchronize()
    result[f"{name}_round_s"] = time.perf_counter() - start
result["max_abs_diff_per_round"] = [float(np.abs(a - b).max()) for a, b in zip(*outputs.values(), strict=True)]
result["speedup"] = result["eager_round_s"] / result["graphs_round_s"]
result.update(graphs=state.graphs, graphs_captured=state.graphs_captured, graph_replays=state.graph_replays,
              graph_fallbacks=state.graph_fallbacks, capture_s=state.capture_seconds,
              capture_failures={str(key): reason for key, reason in state.capture_failures.items()})
print(json.dumps(result))
