"""``segment_batch`` is the batched segmentation path: the model's square working resolution, like ``segment``."""

import numpy as np

from addp_agent.engine.pipeline import seeded_generators


def test_segment_batch_works_at_the_working_resolution_and_matches_segment(pipe):
    image = np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    out = pipe.segment_batch(["the red square", "the circle"], [image, image], num_inference_steps=2,
                             generator=seeded_generators([0, 0]))
    side = pipe.resolution
    assert out.images.shape[1:3] == (side, side)  # painted at the square working size, not the stock size rule
    assert [m.shape for m in out.masks] == [(40, 56), (40, 56)]  # masks at the input's size
    single = pipe.segment(image, "the red square", num_inference_steps=2, seed=0)
    assert np.array_equal(single.mask, out.masks[0])
    stock = pipe(["the red square"], [image], num_inference_steps=2, generator=seeded_generators([0]),
                 output_type="np", show_progress=False)
    assert stock.images.shape[1:3] != (side, side)  # the stock rule keeps the input's aspect ratio
