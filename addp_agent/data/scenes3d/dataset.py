"""Scenes-3D samples: scene + render + expression per (split, seed, index), as RISSample or DepthSample.

Every index has its own random stream, ``SeedSequence([seed, split_id, index])``. It draws the kind of expression
(one, many or no target), then the family, then scenes until one takes an expression of that family whose program
re-evaluates to its targets and whose render keeps every object visible enough. Rendering is batched across indices,
but a scene's pixels do not depend on its batch (see ``raycast``), so samples are the same bytes whatever the batch
size or the number of worker processes.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import torch

from addp_agent.data.depth_sample import DepthSample
from addp_agent.data.sample import Instance, RISSample
from addp_agent.data.scenes3d.config import FAMILIES, ScenesConfig
from addp_agent.data.scenes3d.expressions import Context, Expression, build, near_misses, unique_name
from addp_agent.data.scenes3d.language import caption
from addp_agent.data.scenes3d.programs import evaluate
from addp_agent.data.scenes3d.render import Rendered, render
from addp_agent.data.scenes3d.sampling import Scene, object_facts, sample_scene
from addp_agent.errors import SplitError, UserError
from addp_agent.limits import MAX_GENERATED
from addp_agent.masks import bbox_xywh

SPLITS = {"train": 0, "val": 1, "test": 2}
ID_STRIDE = MAX_GENERATED  # image/ref id = split_id * ID_STRIDE + index; annotation id = image id * 100 + object
DATASET = "scenes3d"
MAX_ATTEMPTS = 2000
BATCH = 16  # scenes rendered together (fastest on CPU at 128 px)
CHUNK_PIXELS = 2**20  # iteration generates this many pixels' worth of samples at a time (64 at 128 px)


def sample_number(split: str, index: int) -> int:
    """Integer image/ref id of a sample (unique across splits)."""
    if split not in SPLITS:
        raise SplitError(f"unknown Scenes-3D split {split!r}; use one of {sorted(SPLITS)}")
    if not 0 <= index < ID_STRIDE:
        raise UserError(f"sample index {index} out of range [0, {ID_STRIDE})")
    return SPLITS[split] * ID_STRIDE + index


@dataclass
class Record:
    """One generated sample before it is cut into a RISSample or a DepthSample."""

    split: str
    index: int
    seed: int
    scene: Scene
    facts: list[dict]
    expression: Expression
    rendered: Rendered
    attempts: int


class _Draft:
    def __init__(self, split: str, index: int, seed: int, cfg: ScenesConfig) -> None:
        state = np.random.SeedSequence([seed, SPLITS[split], index]).generate_state(2, dtype=np.uint64)
        self.rng = random.Random(int(state[0]) << 64 | int(state[1]))
        self.split, self.index, self.seed, self.cfg = split, index, seed, cfg
        self.want = _want(self.rng, cfg)
        self.family = _family(self.rng, cfg, self.want)
        self.attempts = 0
        self.scene: Scene | None = None

    def propose(self) -> None:
        """Draw scenes until one takes an expression that re-evaluates to its targets."""
        while self.attempts < MAX_ATTEMPTS:
            self.attempts += 1
            scene = sample_scene(self.rng, self.cfg)
            if scene is None:
                continue
            facts = object_facts(scene)
            expression = build(self.rng, facts, self.cfg, self.family, self.want)
            if expression is not None and evaluate(expression.program, facts) == sorted(expression.targets):
                self.scene, self.facts, self.expression = scene, facts, expression
                return
        raise UserError(f"no {self.family} expression ({self.want} target) for {self.split}/{self.index} "
                        f"(seed {self.seed}) in {MAX_ATTEMPTS} scenes: loosen the Scenes-3D settings")


def _want(rng: random.Random, cfg: ScenesConfig) -> str:
    if cfg.mode == "classic":
        return "one"
    r = rng.random()
    return "none" if r < cfg.empty_rate else "many" if r < cfg.empty_rate + cfg.multi_rate else "one"


def _family(rng: random.Random, cfg: ScenesConfig, want: str) -> str:
    allowed = FAMILIES if want == "one" else ("attribute", "relation")
    weights = {f: cfg.family_weights.get(f, 0.0) for f in allowed}
    if sum(weights.values()) <= 0:
        weights = {"attribute": 1.0}
    names = [f for f in allowed if weights.get(f, 0) > 0]
    r = rng.random() * sum(weights[f] for f in names)
    for name in names:
        r -= weights[name]
        if r < 0:
            return name
    return names[-1]


def _visible_enough(rendered: Rendered, cfg: ScenesConfig) -> bool:
    fraction = rendered.visible / np.maximum(rendered.coverage, 1)
    return bool((rendered.visible >= cfg.min_pixels).all() and (fraction >= cfg.min_visible_fraction).all())


def generate_records(split: str, indices: Sequence[int], seed: int, cfg: ScenesConfig,
                     device: torch.device | str = "cpu", batch: int = BATCH) -> list[Record]:
    """Records for ``indices``. Scenes are rendered ``batch`` at a time; an index whose render is rejected goes
    back into the next batch with its next scene, so batches stay full."""
    for i in indices:
        sample_number(split, i)
    drafts = [_Draft(split, i, seed, cfg) for i in indices]
    fresh = iter(range(len(drafts)))
    retry: list[int] = []
    done: dict[int, Rendered] = {}
    while True:
        active, retry = retry[:batch], retry[batch:]
        active += list(itertools.islice(fresh, batch - len(active)))
        if not active:
            break
        for k in active:
            drafts[k].propose()
        for k, rendered in zip(active, render([drafts[k].scene for k in active], device), strict=True):
            if _visible_enough(rendered, cfg):
                done[k] = rendered
            else:
                retry.append(k)
    return [Record(d.split, d.index, d.seed, d.scene, d.facts, d.expression, done[k], d.attempts)  # type: ignore[arg-type]
            for k, d in enumerate(drafts)]


def _object_meta(record: Record) -> list[dict]:
    out = []
    for k, fact in enumerate(record.facts):
        mask = record.rendered.mask(k)
        visible, coverage = int(record.rendered.visible[k]), int(record.rendered.coverage[k])
        out.append({**fact, "visible_px": visible, "visible_fraction": round(visible / max(coverage, 1), 4),
                    "bbox": bbox_xywh(mask)})
    return out


def to_ris(record: Record, cfg: ScenesConfig) -> RISSample:
    """The RIS view: union mask of the targets, per-target masks, the other objects named, distractors, caption."""
    number = sample_number(record.split, record.index)
    expression, rendered = record.expression, record.rendered
    targets = sorted(expression.targets)
    target_masks = [rendered.mask(k) for k in targets]
    mask = np.zeros(rendered.ids.shape, dtype=bool)
    for m in target_masks:
        mask |= m
    context = Context(random.Random(0), record.facts, cfg)
    keep = [k for k in range(len(record.facts)) if k not in targets]
    names = {k: unique_name(context, k)[0] for k in range(len(record.facts))}  # its own description
    others = [Instance(mask=rendered.mask(k), name=names[k], instance_id=str(number * 100 + k)) for k in keep]
    position = {k: i for i, k in enumerate(keep)}
    distractors = [position[k] for k in near_misses(expression, record.facts) if k in position]
    objects = _object_meta(record)
    camera = record.scene.camera
    return RISSample(
        sample_id=f"{DATASET}-{record.split}-{record.index:06d}", image=rendered.rgb, expression=expression.text,
        mask=mask, image_id=str(number), ref_id=str(number), others=others, distractors=distractors,
        family=expression.family, program=expression.program, confusable=bool(distractors),
        n_targets=len(targets), target_masks=target_masks, caption=caption(objects, record.scene.floor),
        meta={"dataset": DATASET, "split": record.split, "index": record.index, "seed": record.seed,
              "size": cfg.size, "mode": cfg.mode, "objects": objects, "targets": targets,
              "target_names": [names[k] for k in targets], "spatial": expression.spatial,
              "floor": record.scene.floor, "intrinsics": camera.intrinsics.tolist(),
              "extrinsics": camera.extrinsics.tolist(), "light": record.scene.light.tolist()},
    )


def to_depth(record: Record) -> DepthSample:
    """The depth view: metric z-depth (0 where nothing is hit), its valid mask and the intrinsics."""
    depth = record.rendered.depth
    valid = np.isfinite(depth) & (depth > 0)
    camera = record.scene.camera
    number = sample_number(record.split, record.index)
    return DepthSample(
        sample_id=f"{DATASET}-{record.split}-{record.index:06d}", image=record.rendered.rgb,
        depth=np.where(valid, depth, 0.0).astype(np.float32), valid=valid, intrinsics=camera.intrinsics,
        meta={"dataset": DATASET, "split": record.split, "index": record.index, "seed": record.seed,
              "image_id": str(number), "extrinsics": camera.extrinsics.tolist(), "ids": record.rendered.ids,
              "objects": _object_meta(record)},
    )


class _Generated(Sequence):
    """``n`` samples of one split, generated on demand in batches (``view`` turns a record into a sample)."""

    def __init__(self, split: str, n: int, seed: int, config: ScenesConfig | None, batch: int,
                 device: torch.device | str) -> None:
        if n < 0:
            raise UserError(f"the number of samples must be ≥ 0, got {n}")
        sample_number(split, max(0, n - 1))
        self.split, self.n, self.seed = split, n, seed
        self.config = config or ScenesConfig()
        self.batch, self.device = max(1, batch), device

    def view(self, record: Record):
        raise NotImplementedError

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int): ...
    @overload
    def __getitem__(self, index: slice) -> list: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.batch_of(list(range(*index.indices(self.n))))
        if index < 0:
            index += self.n
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} samples")
        return self.batch_of([index])[0]

    def batch_of(self, indices: list[int]) -> list:
        records = generate_records(self.split, indices, self.seed, self.config, self.device, self.batch)
        return [self.view(r) for r in records]

    def __iter__(self) -> Iterator:
        chunk = max(self.batch, CHUNK_PIXELS // self.config.size ** 2)
        for start in range(0, self.n, chunk):
            yield from self.batch_of(list(range(start, min(self.n, start + chunk))))


class ScenesRef(_Generated, Sequence[RISSample]):
    """RIS samples of one split (classic or generalized, per ``config.mode``)."""

    def __init__(self, split: str, n: int, seed: int = 0, config: ScenesConfig | None = None, batch: int = BATCH,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(split, n, seed, config, batch, device)

    def view(self, record: Record) -> RISSample:
        return to_ris(record, self.config)


class ScenesDepth(_Generated, Sequence[DepthSample]):
    """Depth samples of one split: the same scenes as :class:`ScenesRef` with the same arguments."""

    def __init__(self, split: str, n: int, seed: int = 0, config: ScenesConfig | None = None, batch: int = BATCH,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(split, n, seed, config, batch, device)

    def view(self, record: Record) -> DepthSample:
        return to_depth(record)


def generate_sample(split: str, index: int, seed: int = 0, config: ScenesConfig | None = None) -> RISSample:
    """Deterministic Scenes-3D RIS sample ``index`` of ``split``."""
    cfg = config or ScenesConfig()
    return to_ris(generate_records(split, [index], seed, cfg)[0], cfg)
