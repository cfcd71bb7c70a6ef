"""One way to open an ONNX Runtime session (CPU) for every model the service runs: the image model, the text model,
Silero VAD and PP-OCR. Kept apart from the image embedder so the audio and OCR adapters need not import OpenCV."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def disable_telemetry() -> None:
    """onnxruntime 1.32 starts its 1DS telemetry with the first session of a process (on Lambda it fails to persist a
    device id in the read-only home): this service runs offline in the user's account and reports nothing to anyone.
    Call before any library opens a session of its own (rapidocr does)."""
    import onnxruntime as ort

    ort.disable_telemetry_events()


def create_session(model: Path | bytes, threads: int = 0, *, memory_patterns: bool = True,
                   log_severity: int | None = None) -> Any:
    """A CPU onnxruntime session on a model file or its bytes; threads=0 lets onnxruntime pick one intra-op thread per
    core. `memory_patterns=False` for models whose input shape changes at every call: ONNX Runtime keeps a memory
    pattern (and arena blocks) per shape, so memory would grow with the input's variety (PP-OCR: the frame, a band of
    it, a batch of lines as wide as its widest)."""
    import onnxruntime as ort

    disable_telemetry()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # One graph, run sequentially: inter-op threads would only compete with intra-op ones on 1-2 vCPU Lambdas.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle intra-op threads would otherwise spin between operators, burning the cores the decoder (which analyze
    # overlaps with embedding) needs: measured ~0.8 CPU s more per 60 frames at 2 threads, no faster alone.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not memory_patterns:
        options.enable_mem_pattern = False
        options.enable_cpu_mem_arena = False
    if log_severity is not None:
        options.log_severity_level = log_severity
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
