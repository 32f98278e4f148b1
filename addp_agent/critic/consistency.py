"""The self-consistency critic: judges a mask by the model's own readings, without ground truth or outside help.

It sees what a VLM would see, plus the model itself: the image, the expression, the round's mask, seed and
settings. Nothing else (no annotation, no generator object list, no other service).

* **Detect.** The round is denoised again with ``seeds − 1`` other noise seeds, in one batch. The mask's
  *agreement* is its mean IoU with those readings (two empty masks agree fully). Agreement ≥
  ``accept_agreement`` → accept. Agreement is also the critic's score of the round, by which the loop picks its
  answer when no round is accepted.
* **Locate.** The *consensus* is what most other readings paint; the *doubtful* region is what the mask paints
  away from it (more than a pixel away, so boundary fringes do not count). A mask whose doubtful region is a real
  part of it holds a reading the model itself does not stand by.
* **Name.** Candidate phrases come only from the model's vocabulary (:mod:`~addp_agent.critic.lexicon`). The
  model's own one-step paint for each is scored by how well it covers the doubtful region and spares the consensus,
  in three batched passes (nouns; colours on the best noun; size and material on the best phrase).
* **Waver.** When the mask holds several objects and the other readings paint one of them fully but waver on
  another (paint it partly, or in some seeds only), that other object is the doubtful region and the rest of the
  mask is what to keep.
* **Try.** The best few phrases are tried as D⁻ on the round itself (same seed and settings, one batch). The
  critic proposes the phrase whose corrected mask comes closest to the consensus (or to the rest of the mask), and
  only if it comes closer than the mask did; otherwise it asks for no correction and the loop stops.

No target: readings that all paint nothing agree, so an empty mask is accepted as "not found", and a mask that
paints what no other reading paints is corrected toward nothing. Several targets: masks are unions; the same rules
apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from addp_agent.critic.base import CritiqueRequest, ScoredCritique
from addp_agent.critic.lexicon import Lexicon
from addp_agent.critic.readings import ModelReader
from addp_agent.masks import as_bool_mask, mask_iou


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """IoU, with two empty masks fully alike."""
    return 1.0 if not (a.any() or b.any()) else mask_iou(a, b)


def agreement(mask: np.ndarray, others: Sequence[np.ndarray]) -> float:
    """Mean :func:`similarity` of ``mask`` with each other reading; 1 when there are none."""
    return float(np.mean([similarity(mask, other) for other in others])) if others else 1.0


def doubtful_region(mask: np.ndarray, others: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(doubtful, consensus): the consensus is painted by more than half of ``others``; the doubtful region is the
    mask's paint more than one pixel away from it."""
    votes = np.mean(np.stack(others), axis=0) if len(others) else mask.astype(float)
    consensus = votes > 0.5
    near = ndimage.binary_dilation(consensus, structure=np.ones((3, 3), bool)) if consensus.any() else consensus
    return mask & ~near, consensus


def unstable_part(mask: np.ndarray, others: Sequence[np.ndarray], stable: float = 0.9,
                  unstable: float = 0.75) -> np.ndarray | None:
    """The object of a several-object mask that the other readings paint least, when they paint some other object
    of the mask (nearly) fully (mean coverage ≥ ``stable``) and this one on average less than ``unstable``: the
    model's readings keep one object and waver on the other. Objects are connected components of at least a tenth
    of the mask."""
    labels, count = ndimage.label(mask)
    if count < 2 or not len(others):
        return None
    least = max(4, int(0.1 * mask.sum()))
    parts = [labels == k for k in range(1, count + 1)]
    parts = [p for p in parts if p.sum() >= least]
    if len(parts) < 2:
        return None
    cover = [float(np.mean([(o & p).sum() / p.sum() for o in others])) for p in parts]
    weakest = int(np.argmin(cover))
    return parts[weakest] if max(cover) >= stable and cover[weakest] < unstable else None


@dataclass(frozen=True)
class Naming:
    """A candidate D⁻, how well the model's own paint for it matches the doubtful region (IoU − spill), and the
    decoder confidence of that paint."""

    phrase: str
    score: float
    confidence: float = 0.0


class SelfConsistencyCritic:
    """Seed agreement to detect, the model's own reading of the doubtful region to name it (see the module doc).

    ``reader`` is the model (:class:`~addp_agent.critic.readings.ModelReader`); ``lexicon`` defaults to the
    general lexicon restricted to the words the model knows. ``trials`` phrases are tried as corrections.
    """

    name = "self"

    def __init__(self, reader: ModelReader, seeds: int = 4, accept_agreement: float = 0.8,
                 min_doubtful_share: float = 0.15, min_name_score: float = 0.1, trials: int = 3,
                 min_gain: float = 0.1, lexicon: Lexicon | None = None) -> None:
        if seeds < 2:
            raise ValueError(f"the self critic compares readings and needs at least 2 seeds, got {seeds}")
        self.reader = reader
        self.seeds = seeds
        self.accept_agreement = accept_agreement
        self.min_doubtful_share = min_doubtful_share
        self.min_name_score = min_name_score
        self.trials = trials
        self.min_gain = min_gain
        self.lexicon = lexicon or Lexicon.for_words(reader.known_words())

    def other_seeds(self, seed: int | None) -> list[int]:
        base = 0 if seed is None else int(seed)
        return [(base + k) % 2**31 for k in range(1, self.seeds)]

    def critique(self, request: CritiqueRequest) -> ScoredCritique:
        mask = as_bool_mask(request.mask)
        seeds = self.other_seeds(request.seed)
        others = [as_bool_mask(m) for m in self.reader.seeds(
            request.image, request.expression, seeds, [request.corrections] * len(seeds), request.settings).masks]
        score = agreement(mask, others)
        if score >= self.accept_agreement:
            return self._verdict("accept", score, "")
        doubtful, consensus = doubtful_region(mask, others)
        share = doubtful.sum() / max(1, mask.sum())
        if share >= self.min_doubtful_share:
            if not consensus.any() and sum(o.any() for o in others) > len(others) / 2:
                return self._verdict("revise", score, f"the readings disagree among themselves (agreement "
                                                      f"{score:.2f}); there is no consensus to correct toward")
            return self._correct(request, mask, doubtful, consensus, score,
                                 f"{share:.0%} of the mask is a reading other seeds do not share")
        part = unstable_part(mask, others)
        if part is not None:
            return self._correct(request, mask, part, mask & ~part, score,
                                 "one object of the mask is painted fully by no other reading, the rest by all")
        if similarity(mask, consensus) >= self.accept_agreement:  # the mask is the majority reading
            return self._verdict("accept", score, "")
        return self._verdict("revise", score, f"other readings paint what this mask leaves out (agreement "
                                              f"{score:.2f}); a negative prompt cannot add paint")

    def _correct(self, request: CritiqueRequest, mask: np.ndarray, doubtful: np.ndarray, target: np.ndarray,
                 score: float, finding: str) -> ScoredCritique:
        """Name ``doubtful`` and try the names as D⁻: propose the one whose corrected round comes closest to
        ``target`` (what the mask should keep), if it comes at least ``min_gain`` closer than the mask is."""
        tried = {c.lower() for c in request.corrections}
        candidates = self.candidates(request.image, doubtful, target, request.seed, tried)
        if not candidates:
            return self._verdict("revise", score, f"{finding}, and no phrase the model knows paints it (agreement "
                                                  f"{score:.2f})")
        before = similarity(mask, target)
        trial_seed = 0 if request.seed is None else int(request.seed)
        corrected = self.reader.seeds(request.image, request.expression, [trial_seed] * len(candidates),
                                      [[*request.corrections, c.phrase] for c in candidates], request.settings).masks
        gains = [similarity(as_bool_mask(m), target) for m in corrected]
        k = max(range(len(gains)), key=lambda j: (round(gains[j], 2), -j))  # near-ties: the better-named phrase
        if gains[k] < before + self.min_gain:
            return self._verdict("revise", score, f"{finding}; no correction tried "
                                                  f"({', '.join(c.phrase for c in candidates)}) moves the mask toward "
                                                  f"the rest (agreement {score:.2f})")
        best = candidates[k]
        return self._verdict("revise", score, f"{finding}; the model reads it as '{best.phrase}' (match "
                                              f"{best.score:.2f}); with it as D⁻ the mask's IoU with the rest goes "
                                              f"{before:.2f} → {gains[k]:.2f} (agreement {score:.2f})", best.phrase)

    @staticmethod
    def _verdict(verdict: str, score: float, problem: str, correction: str | None = None) -> ScoredCritique:
        confidence = score if verdict == "accept" else 1.0 - score
        return ScoredCritique(verdict=verdict, problem=problem, correction=correction, confidence=confidence,
                              score=score)

    # ------------------------------------------------------------------------------------------------- naming
    def _rank(self, image: np.ndarray, phrases: list[str], doubtful: np.ndarray, consensus: np.ndarray, seed: int,
              tried: set[str]) -> list[Naming]:
        """``phrases`` (not yet tried) by how well the model's paint for each matches the doubtful region, best
        first: IoU with it, minus the share of the consensus the paint also covers."""
        phrases = [p for p in dict.fromkeys(phrases) if p.lower() not in tried]
        if not phrases:
            return []
        readings = self.reader.phrases(image, phrases, seed)
        area = max(1, int(consensus.sum()))
        named = [Naming(p, mask_iou(paint, doubtful) - float((paint & consensus).sum()) / area, confidence)
                 for p, paint, confidence in zip(phrases, map(as_bool_mask, readings.masks), readings.confidences,
                                                 strict=True)]
        return sorted(named, key=lambda n: (-round(n.score, 2), -n.confidence))  # near-ties: the surer reading

    def candidates(self, image: np.ndarray, doubtful: np.ndarray, consensus: np.ndarray, seed: int | None = None,
                   tried: set[str] | None = None) -> list[Naming]:
        """Up to ``trials`` phrases for the doubtful region, best first, each scoring ≥ ``min_name_score``.

        Three batched one-step passes: every noun; every colour on the best noun; every size and material on the
        best phrase so far."""
        lex, seed, tried = self.lexicon, 0 if seed is None else int(seed), tried or set()
        nouns = self._rank(image, [f"the {n}" for n in (*lex.nouns, *lex.generic)], doubtful, consensus, seed, tried)
        if not nouns:
            return []
        noun = nouns[0].phrase.removeprefix("the ")
        coloured = self._rank(image, [f"the {c} {noun}" for c in lex.colours], doubtful, consensus, seed, tried)
        base = coloured[0] if coloured and round(coloured[0].score, 2) > round(nouns[0].score, 2) else nouns[0]
        colour = base.phrase.removeprefix("the ").removesuffix(noun).strip()
        colour = f"{colour} " if colour else ""
        refined = self._rank(image, [f"the {s} {colour}{noun}" for s in lex.sizes]
                             + [f"the {colour}{m} {noun}" for m in lex.materials], doubtful, consensus, seed, tried)
        pool = sorted({n.phrase: n for n in (*nouns[:2], *coloured[:2], *refined[:2])}.values(),
                      key=lambda n: (-round(n.score, 2), len(n.phrase.split())))  # near-ties: the shorter phrase
        return [n for n in pool if n.score >= self.min_name_score][: self.trials]
