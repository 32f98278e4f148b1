"""The page: one image and expression on top, then the Segment, Correct and (with a depth model) Depth tabs.

Every handler's :class:`~addp_agent.errors.UserError` becomes a visible ``gr.Error`` (HTML-escaped), anything else a
short internal-error message; the server stays up either way. The API names (``/segment``, ``/correct``,
``/trajectory``, ``/depth``, ``/preview``) are what ``gradio_client`` calls.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable
from typing import Any

from addp_agent.demo import correct, depth, segment
from addp_agent.demo.service import DemoService
from addp_agent.demo.views import ROUND_COLUMNS
from addp_agent.errors import UserError
from addp_agent.extras import extra_imports

with extra_imports("demo"):
    import gradio as gr
    from gradio.utils import get_upload_folder

log = logging.getLogger(__name__)
THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # local fonts: the page loads nothing from the internet
INTRO = ("**addp demo**: referring image segmentation by diffusion. Upload an image (or pick an example), type what "
         "to segment, press **Segment**. The **Correct** tab adds a correction by hand or lets a critic run rounds.")


def visible_errors(handler: Callable[..., Any]) -> Callable[..., Any]:
    """``handler`` with its UserError shown as a ``gr.Error`` and any other failure as a short internal error."""

    @functools.wraps(handler)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except UserError as error:
            raise gr.Error(html.escape(str(error), quote=False), print_exception=False) from None
        except Exception as error:  # one request must never take the page down
            log.exception("demo handler %s failed", handler.__name__)
            raise gr.Error(html.escape(f"internal error ({type(error).__name__}): {error}"[:300], quote=False),
                           print_exception=False) from None

    return run


def build_demo(service: DemoService, examples: list[list[str]] | None = None) -> gr.Blocks:
    """The Blocks page over ``service`` (launch it with :func:`launch`)."""
    with gr.Blocks(title="addp demo", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            image = gr.File(label="Image (PNG, JPEG, …)", file_types=["image"], type="filepath", elem_id="image-file")
            preview = gr.Image(label="Image", interactive=False, format="png", elem_id="image-preview", height=256)
        with gr.Row():
            expression = gr.Textbox(label="Referring expression", placeholder="the red circle left of the square",
                                    elem_id="expression", scale=3)
            caption = gr.Textbox(label="Caption (for the paper critic)", placeholder="a short description of the image",
                                 elem_id="caption", scale=2)
        state = gr.State(None)
        if examples:
            gr.Examples(examples, inputs=[image, expression, caption], label="Examples (Shapes-Ref, Scenes-3D)")
        with gr.Accordion("Settings", open=False), gr.Row():
            steps = gr.Number(label="Denoising steps (0: the model's)", value=0, precision=0, minimum=0,
                              maximum=100)
            seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
        image.change(visible_errors(service.preview), image, preview, api_name="preview")
        _segment_tab(service, image, expression, steps, seed, state)
        _correct_tab(service, image, expression, caption, seed, state)
        if service.depth_model is not None:
            _depth_tab(service, image)
    return demo


def _segment_tab(service: DemoService, image, expression, steps, seed, state) -> None:
    with gr.Tab("Segment"):
        run = gr.Button("Segment", variant="primary", elem_id="segment-button")
        with gr.Row():
            overlay = gr.Image(label="Overlay", interactive=False, format="png", elem_id="overlay")
            mask = gr.Image(label="Mask", interactive=False, format="png", image_mode="L", elem_id="mask")
            painted = gr.Image(label="Painted (the model's output)", interactive=False, format="png", elem_id="painted")
        with gr.Row():
            summary = gr.Markdown(elem_id="result-summary")
            files = gr.File(label="Downloads: mask PNG, RLE JSON", file_count="multiple", interactive=False)
        slider = gr.Slider(1, 2, value=1, step=1, visible=False, label="trajectory")
        step_view = gr.Image(label="Trajectory step", interactive=False, format="png", visible=False)
        step_caption = gr.Markdown()
        with gr.Accordion("Result JSON", open=False):
            record = gr.JSON()

        def run_segment(path, text, n_steps, n_seed, progress=gr.Progress()):
            return segment.segment(service, path, text, n_steps, n_seed, progress)

        run.click(visible_errors(run_segment), [image, expression, steps, seed],
                  [overlay, mask, painted, summary, record, slider, step_view, files, state], api_name="segment")
        slider.release(visible_errors(functools.partial(segment.trajectory_step, service)), [state, slider],
                       [step_view, step_caption], api_name="trajectory")


def _correct_tab(service: DemoService, image, expression, caption, seed, state) -> None:
    with gr.Tab("Correct"):
        gr.Markdown("Type a correction (what the mask wrongly covers) and press **Correct** to add a round to the "
                    "current result, or pick a critic to run rounds on its own.")
        with gr.Row():
            correction = gr.Textbox(label="Correction", placeholder="the blue circle", elem_id="correction")
            critic = gr.Dropdown(service.critics, value="none", label="Critic", elem_id="critic")
            rounds = gr.Slider(1, service.tools.max_rounds_limit, value=3, step=1, label="Rounds (with a critic)")
        run = gr.Button("Correct", variant="primary", elem_id="correct-button")
        summary = gr.Markdown(elem_id="correct-summary")
        gallery = gr.Gallery(label="Rounds (★: the round returned)", columns=4, format="png", elem_id="rounds")
        table = gr.Dataframe(headers=list(ROUND_COLUMNS), interactive=False, label="Rounds")

        def run_correct(path, text, page, fix, name, cap, n_rounds, n_seed, progress=gr.Progress()):
            return correct.correct(service, path, text, page, fix, name, cap, n_rounds, n_seed, progress)

        run.click(visible_errors(run_correct), [image, expression, state, correction, critic, caption, rounds, seed],
                  [gallery, table, summary, state], api_name="correct")


def _depth_tab(service: DemoService, image) -> None:
    with gr.Tab("Depth"):
        with gr.Row():
            ensemble = gr.Slider(1, 5, value=1, step=1, label="Ensemble size (> 1: uncertainty map)")
            first = gr.Textbox(label="Which is closer: object A", placeholder="the red cube")
            second = gr.Textbox(label="object B", placeholder="the blue sphere")
        run = gr.Button("Estimate depth", variant="primary", elem_id="depth-button")
        with gr.Row():
            colored = gr.Image(label="Depth (near red, far blue)", interactive=False, format="png")
            uncertainty = gr.Image(label="Uncertainty", interactive=False, format="png", visible=False, image_mode="L")
        stats = gr.Markdown()
        answer = gr.Markdown(elem_id="closer")

        def run_depth(path, size, a, b, progress=gr.Progress()):
            return depth.depth(service, path, size, a, b, progress)

        run.click(visible_errors(run_depth), [image, ensemble, first, second], [colored, uncertainty, stats, answer],
                  api_name="depth")


def launch(demo: gr.Blocks, service: DemoService, host: str = "127.0.0.1", port: int = 7860,
           block: bool = True) -> Any:
    """Serve ``demo`` on ``host:port``: no share link, uploads capped at the image policy's size, queued so
    concurrent users reach the batcher together. ``block=False`` returns at once (tests)."""
    demo.queue(default_concurrency_limit=max(1, service.tools.batch_max), max_size=64)
    theme = gr.themes.Default(font=THEME_FONTS, font_mono=["ui-monospace", "monospace"])
    return demo.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block,
                       max_file_size=service.tools.policy.max_bytes, show_error=True, quiet=not block,
                       ssr_mode=False, theme=theme, allowed_paths=[str(service.work_dir)], enable_monitoring=False)


def upload_dirs() -> list[str]:
    """Where Gradio keeps uploads (and example files): the only folder the page reads images from."""
    return [get_upload_folder()]
