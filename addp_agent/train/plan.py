"""A training run's size in numbers: samples per optimisation step and the number of steps.

The effective batch (samples per optimisation step) is ``batch_size × gradient accumulation × processes``; giving
``effective_batch_size`` sets the accumulation. An epoch is one pass over the referred objects, one random expression
each (the official ADDP ``refseg_dataset``), so ``epochs`` sets ``steps = ⌈epochs × objects / effective batch⌉``.
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from addp_agent.errors import UserError
from addp_agent.train.config import TrainConfig


class RunPlan(BaseModel):
    """What a run does per step and how many steps it takes (printed at the start, kept in ``recipe.json``)."""

    processes: int
    batch_size: int  # per process and micro-batch
    accumulation: int  # micro-batches per optimisation step
    effective_batch: int  # samples per optimisation step, all processes
    steps: int
    epoch_size: int | None = None  # referred objects in the training set (known once the data are loaded)
    epochs: float | None = None  # what ``steps`` covers

    def describe(self) -> str:
        """One line: the step size and the run length, with the arithmetic."""
        size = (f"{self.effective_batch} samples per step = {self.batch_size} per micro-batch × {self.accumulation} "
                f"accumulated × {self.processes} process(es)")
        if self.epoch_size is None:
            return f"plan: {self.steps} steps; {size}"
        length = f"{self.steps} steps"
        if self.epochs is not None:
            length += f" = ⌈{self.epochs:g} epochs × {self.epoch_size} referred objects / {self.effective_batch}⌉"
        else:
            length += f" ({self.steps * self.effective_batch / self.epoch_size:.2f} epochs of {self.epoch_size} " \
                      "referred objects)"
        return f"plan: {length}; {size}"


def accumulation_steps(config: TrainConfig, processes: int) -> int:
    """Micro-batches per optimisation step: from ``effective_batch_size`` when given, else the configured count."""
    if config.effective_batch_size is None:
        return config.gradient_accumulation_steps
    per_micro = config.batch_size * processes
    if config.effective_batch_size % per_micro:
        raise UserError(f"--effective-batch-size {config.effective_batch_size} is not a multiple of --batch-size "
                        f"{config.batch_size} × {processes} process(es); change one of them")
    return config.effective_batch_size // per_micro


def plan_run(config: TrainConfig, processes: int, epoch_size: int | None = None) -> RunPlan:
    """The run's numbers for ``processes`` processes and a training set of ``epoch_size`` referred objects."""
    accumulation = accumulation_steps(config, processes)
    effective = config.batch_size * accumulation * processes
    steps = config.steps
    if config.epochs is not None:
        if epoch_size is None:
            raise ValueError("epochs need the size of the training set")
        steps = max(1, math.ceil(config.epochs * epoch_size / effective))
    return RunPlan(processes=processes, batch_size=config.batch_size, accumulation=accumulation,
                   effective_batch=effective, steps=steps, epoch_size=epoch_size, epochs=config.epochs)
