"""FastAPI's pydantic.v1 check without importing pydantic.v1 when nothing uses it.

FastAPI (0.12x and later) rejects pydantic.v1 models: declaring a route calls `is_pydantic_v1_model_class` on each
annotation, and encoding a response calls `is_pydantic_v1_model_instance`; both run `from pydantic import v1` first.
That import is ~35 ms (about 5% of the API function's cold start) and buys nothing when the process never imported
pydantic.v1: no class can subclass, and no object can be an instance of, a module's class before the module exists.
So the checks answer False until `pydantic.v1` is in `sys.modules`, and defer to FastAPI's own function after that
(a v1 model is still refused with FastAPI's error). FastAPI versions without these functions are left alone.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

_CHECKS = ("is_pydantic_v1_model_class", "is_pydantic_v1_model_instance")
# Modules that bind the checks by name (`from fastapi._compat import ...`) as well as the one defining them.
_MODULES = ("fastapi._compat.shared", "fastapi._compat", "fastapi.utils", "fastapi.encoders")


def _lazy(original: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def check(obj: Any) -> bool:
        if "pydantic.v1" not in sys.modules:
            return False
        return original(obj)

    check.__wrapped__ = original  # type: ignore[attr-defined]
    check.__name__ = original.__name__
    return check


def skip_unused_pydantic_v1_check() -> int:
    """Install the lazy checks (idempotent); returns how many module attributes now point at them."""
    patched = 0
    for module_name in _MODULES:
        try:
            module = importlib.import_module(module_name)  # all imported by `import fastapi` already
        except ImportError:
            continue
        for name in _CHECKS:
            original = getattr(module, name, None)
            if original is None or not callable(original):
                continue
            if not hasattr(original, "__wrapped__"):
                setattr(module, name, _lazy(original))
            patched += 1
    return patched
