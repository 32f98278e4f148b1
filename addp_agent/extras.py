"""Optional dependencies: a missing extra is one clear error naming what to install, not a ModuleNotFoundError.

Wrap the imports a module needs from an extra in :func:`extra_imports`::

    with extra_imports("agent"):
        import openai

and let a command check its extra up front, before it does any work, with ``require_extra("eval")``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager

from addp_agent.errors import UserError

# the top-level modules each extra of pyproject.toml provides
EXTRAS: dict[str, tuple[str, ...]] = {
    "agent": ("openai", "langchain_core", "mcp", "mcp_types", "httpx", "uvicorn"),
    "train": ("accelerate", "matplotlib"),
    "eval": ("accelerate", "matplotlib"),
    "demo": ("gradio",),
}


class MissingExtra(UserError):
    """An optional dependency is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(f"this needs the '{extra}' extra ({module} is not installed): "
                         f"pip install 'addp-agent[{extra}]'")
        self.extra, self.module = extra, module


def require_extra(extra: str, *modules: str) -> None:
    """Check up front that ``modules`` (default: every module of ``extra``) import; :class:`MissingExtra` if not."""
    with extra_imports(extra):
        for module in modules or EXTRAS[extra]:
            importlib.import_module(module)


@contextmanager
def extra_imports(extra: str) -> Iterator[None]:
    """Inside the block, a missing module of ``extra`` raises :class:`MissingExtra` (others propagate as is)."""
    if extra not in EXTRAS:
        raise KeyError(f"unknown extra {extra!r}; extras: {', '.join(EXTRAS)}")
    try:
        yield
    except ModuleNotFoundError as error:
        top = (error.name or "").split(".")[0]
        if top not in EXTRAS[extra]:
            raise  # another package is broken: not ours to rename
        raise MissingExtra(extra, top) from None
