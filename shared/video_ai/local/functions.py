"""Load the Lambda functions' `handler.py` modules in-process, as Lambda would, for `video-ai serve`.

Every `functions/<name>/` directory holds its own `handler.py` and `bootstrap.py` and imports the latter as the
top-level module `bootstrap` (that is how Lambda's zip layout resolves it), so each load puts its directory first on
`sys.path`, drops any other function's `bootstrap` from `sys.modules`, and registers the handler under a unique name.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import video_ai

FUNCTION_NAMES = ("api", "worker", "ingest", "callback")
_load_lock = threading.Lock()


def find_project_file(name: str) -> Path:
    """A file or directory of the source tree (`functions`, `template.yaml`): $VIDEO_AI_HOME, the cwd, the checkout."""
    candidates: list[Path] = []
    if os.environ.get("VIDEO_AI_HOME"):
        candidates.append(Path(os.environ["VIDEO_AI_HOME"]))
    candidates.append(Path.cwd())
    # An editable install: shared/video_ai/__init__.py -> the repository root two levels up.
    candidates.append(Path(video_ai.__file__).resolve().parents[2])
    for root in candidates:
        if (root / name).exists():
            return root / name
    searched = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{name} not found (looked in {searched}; set VIDEO_AI_HOME to the source tree)")


def load_function(name: str, functions_dir: Path | None = None) -> ModuleType:
    """Import `functions/<name>/handler.py` as module `video_ai_fn_<name>_handler` (once per process)."""
    module_name = f"video_ai_fn_{name}_handler"
    with _load_lock:
        if module_name in sys.modules:
            return sys.modules[module_name]
        directory = (functions_dir or find_project_file("functions")) / name
        path = directory / "handler.py"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such handler")
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        previous_bootstrap = sys.modules.pop("bootstrap", None)
        sys.path.insert(0, str(directory))
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        finally:
            sys.path.remove(str(directory))
            # Keep this function's bootstrap under its own name, and never let it shadow the next function's.
            loaded_bootstrap = sys.modules.pop("bootstrap", None)
            if loaded_bootstrap is not None:
                sys.modules[f"video_ai_fn_{name}_bootstrap"] = loaded_bootstrap
            if previous_bootstrap is not None:
                sys.modules["bootstrap"] = previous_bootstrap
        return module


@dataclass(slots=True)
class LambdaContext:
    """The parts of Lambda's context object that powertools and the handlers read."""

    function_name: str
    timeout_s: float
    memory_limit_in_mb: int = 1024
    region: str = "us-east-1"
    account_id: str = "123456789012"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))


# Timeouts and memory from template.yaml, so handlers see the budget they would get in AWS.
FUNCTION_LIMITS: dict[str, tuple[float, int]] = {
    "api": (29.0, 1024),
    "worker": (900.0, 3008),
    "ingest": (30.0, 512),
    "jobs-dead-letter": (30.0, 256),
    "callback": (120.0, 256),
}


def lambda_context(name: str, stage: str = "local", region: str = "us-east-1") -> LambdaContext:
    timeout_s, memory = FUNCTION_LIMITS.get(name, (60.0, 512))
    return LambdaContext(function_name=f"video-ai-{stage}-{name}", timeout_s=timeout_s, memory_limit_in_mb=memory,
                         region=region, log_group_name=f"/aws/lambda/video-ai-{stage}-{name}")


def invoke(module: ModuleType, event: dict[str, Any], context: LambdaContext) -> Any:
    """Call the module's `handler(event, context)` as the Lambda runtime does."""
    return module.handler(event, context)
