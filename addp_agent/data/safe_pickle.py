"""Restricted unpickling for REFER's ``refs(<splitBy>).p``: plain containers and primitives only.

A pickle can name any importable callable (``os.system``...) and run it while loading. This unpickler
resolves no global except ``set``/``frozenset``, so only None, bool, int, float, complex, str, bytes,
bytearray, list, tuple, dict, set and frozenset can be built; anything else is refused.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from addp_agent.errors import DataError

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    (module, name): obj
    for module in ("builtins", "__builtin__")
    for name, obj in (("set", set), ("frozenset", frozenset), ("complex", complex))
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` only returns ``set``/``frozenset``/``complex``."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"global '{module}.{name}' is not allowed (only plain containers and primitives)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def loads_plain(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` allowing only plain types; :class:`DataError` naming ``source`` otherwise."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="utf-8").load()
    except pickle.UnpicklingError as error:
        raise DataError(f"{source}: refusing to unpickle: {error}") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, UnicodeDecodeError,
            OverflowError, MemoryError) as error:
        raise DataError(f"{source}: not a readable pickle ({type(error).__name__}: {error})") from None


def load_plain(path: str | Path) -> Any:
    """Read and restrictedly unpickle a file (see :func:`loads_plain`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    return loads_plain(data, str(path))
