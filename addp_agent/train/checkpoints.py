"""Training checkpoints (accelerate state, resumable) and the EMA pipeline export of a run folder."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from addp_agent.errors import UserError
from addp_agent.train.config import TrainConfig

RUN_FOLDERS = ("checkpoints", "model")
RUN_FILES = ("train_config.json", "recipe.json", "log.jsonl")


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])


def _checkpoints(folder: Path) -> list[Path]:
    """The ``step-N`` folders in ``folder`` (other names, such as ``step-old``, are not checkpoints)."""
    return [p for p in folder.glob("step-*") if re.fullmatch(r"step-\d+", p.name) and p.is_dir()]


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete ``step-N`` folder (one with ``step.json``), or None."""
    if not folder.is_dir():
        return None
    done = [p for p in _checkpoints(folder) if (p / "step.json").exists()]
    return max(done, key=_step_of, default=None)


def check_run_folder(out: Path, data_cache: Path | None = None) -> None:
    """:class:`UserError` unless ``out`` (a run folder, before any model work) has its folders and files where a
    run writes them: ``checkpoints/`` and ``model/`` folders, ``log.jsonl`` and the JSON records files; and unless
    ``data_cache`` (when given) can be written as one file."""
    if data_cache is not None:
        from addp_agent.outputs_io import check_output_file
        from addp_agent.train.cache import may_replace

        check_output_file(Path(data_cache), "--data-cache")
        if not may_replace(Path(data_cache)):
            raise UserError(f"--data-cache {data_cache}: exists and is not a training-set cache (a torch file); "
                            "give a new file or an earlier run's cache")
    for name in RUN_FOLDERS:
        if (out / name).exists() and not (out / name).is_dir():
            raise UserError(f"{out / name}: exists and is not a folder, so {out} is not a run folder; "
                            "use a new --out")
    for name in RUN_FILES:
        if (out / name).is_dir():
            raise UserError(f"{out / name}: is a folder, so {out} is not a run folder; use a new --out")


def read_marker(checkpoint: Path) -> tuple[int, float]:
    """(step, training seconds before it) of a complete checkpoint, from its ``step.json``."""
    try:
        marker = json.loads((checkpoint / "step.json").read_text(encoding="utf-8"))
        return int(marker["step"]), float(marker.get("elapsed_s", 0.0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{checkpoint / 'step.json'}: not a checkpoint marker ({type(error).__name__}: {error}); "
                        "remove that checkpoint or use a new --out") from None


def load_checkpoint(accelerator, checkpoint: Path) -> tuple[int, float]:
    """Load ``checkpoint`` into the prepared objects; returns :func:`read_marker`'s (step, seconds)."""
    marker = read_marker(checkpoint)
    try:
        accelerator.load_state(str(checkpoint))
    except (RuntimeError, KeyError, ValueError) as error:
        raise UserError(f"{checkpoint}: checkpoint does not fit this model/config ({error}); "
                        "use a new --out or the same settings") from None
    except OSError as error:  # a file of the state is missing or unreadable
        raise UserError(f"{checkpoint}: not a complete checkpoint ({error.strerror or error}: "
                        f"{error.filename or ''}); remove it or use a new --out") from None
    return marker


def save_checkpoint(accelerator, folder: Path, step: int, elapsed_s: float = 0.0) -> None:
    """Write ``step-N`` atomically enough: ``step.json`` is written last and marks it complete."""
    target = folder / f"step-{step}"
    accelerator.save_state(str(target))
    if accelerator.is_main_process:
        (target / "step.json").write_text(json.dumps({"step": step, "elapsed_s": round(elapsed_s, 1)}))
        for old in sorted(_checkpoints(folder), key=_step_of)[:-2]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def export_ema(pipe, ema_unet, ema_text, accelerator, folder: Path, config: TrainConfig, step: int,
               finished: bool = False, stopped_by: str = "steps") -> None:
    """Save the EMA weights as a diffusers pipeline folder (safetensors); training weights are restored after."""
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    unet = accelerator.unwrap_model(pipe.unet)
    text = accelerator.unwrap_model(pipe.text_encoder)
    ema_unet.store(unet.parameters())
    ema_text.store(text.parameters())
    try:
        ema_unet.copy_to(unet.parameters())
        if config.train_text_encoder:
            ema_text.copy_to(text.parameters())
        pipe.register_modules(unet=unet, text_encoder=text)
        pipe.register_to_config(default_num_inference_steps=config.val_steps)
        staging = folder.with_name(folder.name + ".tmp")
        pipe.save_pretrained(staging, safe_serialization=True)
        (staging / "training.json").write_text(json.dumps(
            {"config": json.loads(config.model_dump_json()), "step": step, "finished": finished,
             "stopped_by": stopped_by if finished else None, "metrics": last_val(folder.parent / "log.jsonl")},
            indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        ema_unet.restore(unet.parameters())
        ema_text.restore(text.parameters())


def append_log(accelerator, path: Path, record: dict, bar, summary: str | None) -> None:
    """Append ``record`` to the run's ``log.jsonl`` (main process only) and print ``summary`` above the progress
    bar when there is one (a validation row)."""
    if not record or not accelerator.is_main_process:
        return
    with path.open("a") as log:
        log.write(json.dumps(record) + "\n")
    if summary:
        bar.write(summary)


def last_val(log: Path) -> dict[str, float]:
    """The ``val_*`` values of the last validation row of ``log.jsonl``."""
    if not log.exists():
        return {}
    rows = [json.loads(line) for line in log.read_text().splitlines() if "val_mIoU" in line]
    return {k: v for k, v in rows[-1].items() if k.startswith("val_")} if rows else {}
