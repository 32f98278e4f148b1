"""The self-consistency critic: its rules on constructed readings, and detection, naming and correction with the
bundled Shapes-Ref model (real weights, real pipeline)."""

from __future__ import annotations

import numpy as np
import pytest

from addp_agent.agent import LoopConfig, Session
from addp_agent.critic import CritiqueRequest, ScoredCritique
from addp_agent.critic.consistency import (
    SelfConsistencyCritic,
    agreement,
    doubtful_region,
    similarity,
    unstable_part,
)
from addp_agent.critic.lexicon import Lexicon
from addp_agent.critic.readings import ModelReader, PipelineReader, Readings
from addp_agent.data.shapes import generate_sample
from addp_agent.data.sources import load_source
from addp_agent.masks import mask_iou

pytestmark = pytest.mark.usefixtures("one_thread")


def box(y0, y1, x0, x1, size=24):
    mask = np.zeros((size, size), bool)
    mask[y0:y1, x0:x1] = True
    return mask


A, B, C = box(2, 8, 2, 8), box(14, 20, 14, 20), box(2, 8, 14, 20)
EMPTY = np.zeros((24, 24), bool)


class ConstructedReader:
    """A :class:`ModelReader` whose readings are given: ``seeds`` per corrections tuple, ``phrases`` by phrase."""

    def __init__(self, seeds: dict[tuple[str, ...], list[np.ndarray]], phrases: dict[str, np.ndarray] | None = None):
        self.by_corrections, self.by_phrase = seeds, phrases or {}
        self.calls: list[tuple] = []

    def seeds(self, image, expression, seeds, corrections, settings):
        self.calls.append(("seeds", list(seeds), [tuple(c) for c in corrections]))
        if len(set(map(tuple, corrections))) == 1:
            masks = self.by_corrections[tuple(corrections[0])]
            return Readings([masks[k % len(masks)] for k in range(len(seeds))], [0.9] * len(seeds))
        return Readings([self.by_corrections[tuple(c)][0] for c in corrections], [0.9] * len(corrections))

    def phrases(self, image, phrases, seed):
        self.calls.append(("phrases", list(phrases)))
        return Readings([self.by_phrase.get(p, EMPTY) for p in phrases], [0.5] * len(phrases))

    def known_words(self):
        return frozenset({"blue", "yellow", "square", "circle", "small", "object"})


def request(mask, corrections=()):
    return CritiqueRequest(image=np.zeros((24, 24, 3), np.uint8), expression="the blue square", mask=mask,
                           corrections=list(corrections), seed=0, settings={"num_inference_steps": 1})


def critique(reader, mask, corrections=(), **kw):
    return SelfConsistencyCritic(reader, **kw).critique(request(mask, corrections))


# ------------------------------------------------------------------------------------------- constructed
def test_agreement_and_the_doubtful_region():
    assert similarity(EMPTY, EMPTY) == 1.0 and agreement(A, []) == 1.0
    assert agreement(A, [A, A | B]) == pytest.approx((1 + 36 / 72) / 2)
    doubtful, consensus = doubtful_region(A | B, [B, B, A | B])
    assert np.array_equal(consensus, B) and np.array_equal(doubtful, A)
    fringe = box(13, 21, 13, 21)  # B plus a one-pixel ring: no doubtful region
    assert not doubtful_region(fringe, [B, B, B])[0].any()


def test_the_reader_protocol_is_what_the_critic_needs():
    assert isinstance(ConstructedReader({}), ModelReader)


def test_agreeing_readings_are_accepted_with_their_score():
    reader = ConstructedReader({(): [A]})
    result = critique(reader, A)
    assert isinstance(result, ScoredCritique) and (result.verdict, result.score) == ("accept", 1.0)
    assert reader.calls == [("seeds", [1, 2, 3], [(), (), ()])]  # the round's seed is 0: the next three


def test_no_target_every_reading_empty_is_accepted_as_not_found():
    result = critique(ConstructedReader({(): [EMPTY]}), EMPTY)
    assert result.verdict == "accept" and result.score == 1.0


def test_several_targets_painted_by_every_reading_are_accepted():
    assert critique(ConstructedReader({(): [A | B]}), A | B).verdict == "accept"


def test_a_reading_no_other_seed_shares_is_named_tried_and_corrected():
    reader = ConstructedReader({(): [B], ("the yellow circle",): [B], ("the circle",): [A], ("the object",): [A | B]},
                               phrases={"the circle": A, "the yellow circle": A, "the object": A | B})
    result = critique(reader, A)
    assert result.verdict == "revise" and result.score == 0.0
    assert result.correction == "the yellow circle"  # the one the trial moved onto the consensus
    assert "0.00 → 1.00" in result.problem
    trial = [call for call in reader.calls if call[0] == "seeds"][-1]
    assert trial[1] == [0, 0] and trial[2] == [("the circle",), ("the yellow circle",)]


def test_no_correction_when_no_trial_moves_the_mask_toward_the_others():
    reader = ConstructedReader({(): [B], ("the circle",): [A], ("the yellow circle",): [A]},
                               phrases={"the circle": A, "the yellow circle": A})
    result = critique(reader, A)
    assert result.verdict == "revise" and result.correction is None and "moves the mask toward" in result.problem


def test_no_name_when_no_phrase_paints_the_doubtful_region():
    result = critique(ConstructedReader({(): [B]}), A)
    assert result.correction is None and "no phrase the model knows paints it" in result.problem


def test_a_mask_painting_what_no_reading_paints_is_corrected_toward_nothing():
    reader = ConstructedReader({(): [EMPTY], ("the circle",): [EMPTY]}, phrases={"the circle": A})
    result = critique(reader, A)
    assert result.correction == "the circle" and "0.00 → 1.00" in result.problem


def test_readings_that_disagree_among_themselves_give_no_correction():
    reader = ConstructedReader({(): [B, C, A]}, phrases={"the circle": A})
    result = SelfConsistencyCritic(reader, seeds=4).critique(request(box(14, 20, 2, 8)))
    assert result.verdict == "revise" and result.correction is None and "disagree among themselves" in result.problem


def test_an_object_the_other_readings_waver_on_is_named_and_the_rest_kept():
    half_b = box(14, 17, 14, 20)
    assert np.array_equal(unstable_part(A | B, [A | B, A | half_b, A]), B)  # A always, B in 1.5 of 3 readings
    assert unstable_part(A | B, [A | B, A | B, A | half_b]) is None  # B: mean coverage 0.83, not wavering
    assert unstable_part(A | B, [A, B, A | B]) is None  # no object is painted by every reading
    reader = ConstructedReader({(): [A | B, A | B, A], ("the circle",): [A]}, phrases={"the circle": B})
    result = critique(reader, A | B, accept_agreement=0.9)
    assert result.correction == "the circle" and "one object of the mask" in result.problem
    assert "0.50 → 1.00" in result.problem  # the trial keeps A, what every reading paints


def test_a_mask_missing_what_the_others_paint_cannot_be_fixed_by_a_negative_prompt():
    result = critique(ConstructedReader({(): [A | B]}), A)
    assert result.verdict == "revise" and result.correction is None and "cannot add paint" in result.problem


def test_a_majority_reading_with_one_dissenting_seed_is_accepted():
    result = critique(ConstructedReader({(): [A, A, B]}), A)
    assert result.verdict == "accept" and result.score == pytest.approx(2 / 3)


def test_corrections_already_applied_are_not_proposed_again():
    reader = ConstructedReader({(): [B], ("the circle",): [B], ("the circle", "the object"): [B]},
                               phrases={"the circle": A, "the object": A})
    result = critique(reader, A, corrections=("the circle",))
    assert result.correction == "the object"


def test_the_lexicon_keeps_only_words_the_model_knows_one_per_synonym_group():
    lexicon = Lexicon.for_words({"grey", "gray", "ball", "red", "metallic", "object", "big"})
    assert lexicon.colours == ("red", "gray") and lexicon.nouns == ("ball",) and lexicon.materials == ("metallic",)
    assert lexicon.sizes == ("big",) and lexicon.generic == ("object",)


def test_the_critic_needs_two_seeds():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        SelfConsistencyCritic(ConstructedReader({}), seeds=1)


# ------------------------------------------------------------------------------------- the bundled model
@pytest.fixture(scope="module")
def bundled():
    from addp_agent.models.registry import load_pipeline

    pipe = load_pipeline(None, device="cpu", progress=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_bundled_model_accepts_its_own_answer_and_names_a_wrong_object_in_its_own_words(bundled):
    sample = generate_sample("val", 5)  # "the diamond", with a circle beside it
    reader = PipelineReader(bundled)
    critic = SelfConsistencyCritic(reader)
    settings = dict(bundled.resolve_settings())
    answer = bundled.segment(sample.image, sample.expression).mask
    right = critic.critique(CritiqueRequest(image=sample.image, expression=sample.expression, mask=answer, seed=0,
                                            settings=settings))
    assert right.verdict == "accept" and right.score > 0.9
    circle = sample.others[0].mask
    wrong = critic.critique(CritiqueRequest(image=sample.image, expression=sample.expression, mask=circle, seed=0,
                                            settings=settings))
    assert wrong.verdict == "revise" and wrong.score < 0.1 and wrong.correction is not None
    paint = reader.phrases(sample.image, [wrong.correction], 0).masks[0]
    assert mask_iou(paint, circle) > 0.8  # the model paints its name for the wrong object onto that object
    corrected = bundled.segment(sample.image, sample.expression, corrections=[wrong.correction]).mask
    assert not (corrected & circle).any() and mask_iou(corrected, sample.mask) > 0.6


def test_bundled_model_loop_fixes_a_crowded_scene_and_keeps_a_right_one(bundled):
    samples = list(load_source("shapes-gen:117:11:64:crowded", "test"))
    critic = SelfConsistencyCritic(PipelineReader(bundled))
    wrong = samples[116]  # "the small square above the small yellow square": round 1 also paints a circle
    result = Session(bundled, wrong.image, wrong.expression, LoopConfig(max_rounds=3)).run(critic)
    first, best = (mask_iou(r.mask, wrong.mask) for r in (result.rounds[0], result.best))
    assert result.rounds[0].critique.verdict == "revise" and result.rounds[1].corrections
    assert result.stop_reason == "accepted" and result.best.index == 2 and best > first + 0.3
    right = samples[0]
    kept = Session(bundled, right.image, right.expression, LoopConfig(max_rounds=3)).run(critic)
    assert kept.stop_reason == "accepted" and len(kept.rounds) == 1 and mask_iou(kept.best.mask, right.mask) > 0.9
