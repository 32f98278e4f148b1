"""The Correct tab: a typed correction refines the page's session (the ``refine`` tool), or a critic runs up to N
rounds of a new session on the shared model; every round is shown with its critique, the returned round marked."""

from __future__ import annotations

from typing import Any

from addp_agent.agent import LoopConfig, Session, SessionResult
from addp_agent.critic.base import Critic, Critique, CritiqueRequest
from addp_agent.demo import views
from addp_agent.demo.segment import current
from addp_agent.demo.service import DemoService
from addp_agent.errors import UserError
from addp_agent.images import bounded_copy
from addp_agent.tools.store import mask_id as make_mask_id
from addp_agent.tools.store import parse_mask_id


class ReportingCritic:
    """``critic`` that reports each critique as progress (every other attribute is the critic's own)."""

    def __init__(self, critic: Critic, progress: Any, rounds: int) -> None:
        self._critic, self._progress, self._rounds = critic, progress, rounds
        self.name = critic.name

    def critique(self, request: CritiqueRequest) -> Critique:
        if self._progress is not None:
            self._progress(request.round / (self._rounds + 1), desc=f"round {request.round}: the {self.name} critic")
        return self._critic.critique(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._critic, name)


def correct(service: DemoService, path: str | None, expression: str | None, state: dict | None,
            correction: str | None, critic_name: str | None, caption: str | None, rounds: float | None,
            seed: float | None, progress: Any = None) -> tuple:
    """gallery [(overlay, caption)], rows, summary, page state."""
    path, text = service.image_path(path), service.expression(expression)
    typed, name = (correction or "").strip(), critic_name or "none"
    if name == "none":
        if not typed:
            raise UserError("the correction is empty: type what the mask wrongly covers (e.g. 'the blue circle'), "
                            "or pick a critic")
        session, session_id, returned, note = _refine(service, path, text, state, typed, int(seed or 0), progress)
    else:
        critic = service.critic(name, caption)
        image = service.image(path)
        result, session, session_id = run_with_critic(service, image, text, critic, int(rounds or 1),
                                                      int(seed or 0), [typed] if typed else [], progress)
        returned = result.best.index
        note = f"stop: {result.stop_reason}" + (f" ({result.stop_detail})" if result.stop_detail else "")
    gallery = [(views.round_overlay(session, r), views.round_caption(r, r.index == returned)) for r in session.rounds]
    rows = [views.round_row(r, r.index == returned) for r in session.rounds]
    summary = f"**returned: round {returned}** of {len(session.rounds)} · {note}"
    return gallery, rows, summary, {"mask_id": make_mask_id(session_id, returned), "image": path, "expression": text}


def _refine(service: DemoService, path: str, text: str, state: dict | None, typed: str, seed: int,
            progress: Any) -> tuple[Session, str, int, str]:
    """One more round on the page's session (segmenting first when it has none for this image and expression)."""
    base = current(state, path, text)
    if base is None:
        if progress is not None:
            progress(0.1, desc="round 1")
        base = service.segment(path, text, seed=seed).result.mask_id
    if progress is not None:
        progress(0.5, desc=f"correcting: '{typed}'")
    refined = service.refine(base, typed).result.mask_id
    session, index = service.tools.store.lookup(refined)
    note = f"round {index} refines round {parse_mask_id(base)[1]} with '{typed}'"
    return session, parse_mask_id(refined)[0], index, note


def run_with_critic(service: DemoService, image: Any, expression: str, critic: Critic | None, rounds: int, seed: int,
                    corrections: list[str], progress: Any = None) -> tuple[SessionResult, Session, str]:
    """A new session of up to ``rounds`` rounds with ``critic``, on the shared model (no batch runs meanwhile),
    kept in the tools' store so later typed corrections refine it."""
    tools = service.tools
    with tools.exclusive() as pipe:
        steps = pipe.resolve_settings(None)["num_inference_steps"]
        config = LoopConfig(max_rounds=max(1, min(rounds, tools.max_rounds_limit)), num_inference_steps=steps,
                            seed=seed, trajectory_every=max(1, steps // tools.trajectory_points),
                            convergence_iou=tools.convergence_iou)
        session = Session(pipe, bounded_copy(image), expression, config)
        session.input_size = (int(image.shape[0]), int(image.shape[1]))
        judge = ReportingCritic(critic, progress, config.max_rounds) if critic is not None else None
        result = session.run(judge, corrections)
    return result, session, tools.store.add(session, status=result.stop_reason)
