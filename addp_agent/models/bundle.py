"""Copy a trained pipeline into the package as the bundled default (fp16 safetensors, loaded as fp32 on CPU).

    python -m addp_agent.models.bundle runs/default/model
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from addp_agent.models.registry import DEFAULT_MODEL_DIR

MAX_BYTES = 30 * 1024 * 1024


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def bundle(source: Path, target: Path = DEFAULT_MODEL_DIR) -> int:
    """Save ``source`` (a pipeline folder) to ``target`` in fp16; keeps target's README.md; returns the size."""
    from addp_agent.engine.pipeline import ADDPPipeline

    pipe = ADDPPipeline.from_pretrained(source)
    pipe.to(torch.float16)
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    pipe.save_pretrained(staging, safe_serialization=True)
    for extra in ("README.md",):
        if (target / extra).exists():
            shutil.copy2(target / extra, staging / extra)
    if (source / "training.json").exists():
        shutil.copy2(source / "training.json", staging / "training.json")
    size = folder_bytes(staging)
    if size > MAX_BYTES:
        shutil.rmtree(staging)
        raise SystemExit(f"bundled model would be {size / 2**20:.1f} MiB, over the 30 MiB limit")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--target", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args()
    size = bundle(args.source, args.target)
    print(f"bundled {args.source} → {args.target} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
