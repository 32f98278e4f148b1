"""Example inputs for the page, generated here (nothing downloaded): Shapes-Ref and Scenes-3D validation scenes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from addp_agent.data.sample import RISSample

DEFAULT_EXAMPLES = ("shapes:val:0", "shapes:val:3", "scenes:val:0", "scenes:val:1")


def example_sample(spec: str) -> RISSample:
    """``shapes:SPLIT:INDEX`` (Shapes-Ref) or ``scenes:SPLIT:INDEX`` (Scenes-3D, default preset, 128 px)."""
    source, split, index = spec.split(":")
    if source == "shapes":
        from addp_agent.data.shapes import generate_sample
    else:
        from addp_agent.data.scenes3d import generate_sample
    return generate_sample(split, int(index))


def write_examples(folder: Path, specs: tuple[str, ...] = DEFAULT_EXAMPLES, upscale: int = 256) -> list[list[str]]:
    """Each example as a PNG in ``folder`` (nearest-upscaled to ``upscale`` px for viewing) and its
    ``[image path, expression, caption]`` row for ``gr.Examples``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in specs:
        sample = example_sample(spec)
        path = folder / f"{spec.replace(':', '-')}.png"
        image = Image.fromarray(sample.image)
        if upscale and max(image.size) < upscale:
            scale = upscale // max(image.size)
            image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
        image.save(path)
        rows.append([str(path), sample.expression, sample.caption])
    return rows
