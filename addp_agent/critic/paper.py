"""Paper mode (ADDP Fig. 1c): ask a text-only LLM what might confuse the segmentation; the answer is D⁻."""

from __future__ import annotations

import re

from addp_agent.critic.base import CriticError, Critique, CritiqueRequest
from addp_agent.critic.chat import ChatSettings, ChatTransport
from addp_agent.critic.prompts import load_prompt
from addp_agent.data.sample import RISSample
from addp_agent.errors import UserError
from addp_agent.text import clean_text


def answer_phrase(answer: str) -> str:
    """The first line of an answer without list markers, quotes, a leading 'the answer is' or a final period."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        raise CriticError("malformed", "empty answer")
    phrase = re.sub(r"^([-*•]|\d+[.)])\s*", "", lines[0])
    phrase = re.sub(r"^(answer|correction)\s*:\s*", "", phrase, flags=re.IGNORECASE)
    return phrase.strip().strip("\"'“”`").rstrip(".").strip()


class PaperCritic:
    """Asks "This is an image of <CAPTION>. What might confuse the segmentation of <REFERRING>?" once.

    The question does not depend on the mask, so the first critique always asks for a revision with the answer
    as correction, and every later one accepts.
    """

    name = "paper"

    def __init__(self, caption: str, settings: ChatSettings | None = None,
                 transport: ChatTransport | None = None) -> None:
        if not isinstance(caption, str) or not caption.strip():
            raise UserError("the paper critic asks 'This is an image of <CAPTION>. What might confuse …?' and needs "
                            "a caption of the image; none was given (no caption is invented)")
        self.caption = clean_text(caption, "caption")
        self.transport = transport or ChatTransport(settings)

    @classmethod
    def from_sample(cls, sample: RISSample, transport: ChatTransport) -> PaperCritic:
        """The critic for one sample, asking about the sample's own caption; a sample without one is an error."""
        if not sample.caption.strip():
            raise UserError(f"sample {sample.sample_id} has no caption, and the paper critic needs one (it asks "
                            "'This is an image of <CAPTION>. …'); Scenes-3D samples have captions, Shapes-Ref ones "
                            "do not")
        return cls(sample.caption, transport=transport)

    def question(self, expression: str) -> str:
        return load_prompt("paper_question").render(caption=self.caption, referring=expression)

    def critique(self, request: CritiqueRequest) -> Critique:
        if request.history or request.corrections:
            return Critique(verdict="accept", problem="", correction=None, confidence=0.5)
        messages = [{"role": "system", "content": load_prompt("paper_system").render()},
                    {"role": "user", "content": self.question(request.expression)}]
        phrase = answer_phrase(self.transport.ask_text(messages))
        return Critique(verdict="revise", problem=f"'{phrase}' might confuse the segmentation",
                        correction=phrase, confidence=0.5)
