"""Label confidences that mean what they say: temperature scaling of the image model's ImageNet logits.

A label's confidence is the calibrated probability that it is the right class for the frame: among top labels
reported at ~0.8, about 80% are right (on held-out ImageNet validation photographs; BENCHMARKS.md "Label
calibration"). Each input the analyzer scores (a square crop, the whole frame) gives softmax(logits / T), and a class
takes its best input. T minimises the negative log-likelihood of each photograph's most confident input (whose top
class and confidence are the reported top label's) on half of a labelled set; the other half measures the result
(make_label_calibration.py, which records its inputs in label_calibration.json). EfficientNet-Lite0 was trained with
label smoothing, so its raw softmax is under-confident (T < 1 sharpens it). Why temperature scaling: it keeps each
frame's ranking (accuracy is unchanged), and its one parameter fits on a few hundred photographs, where per-class
(vector, matrix) scaling or histogram binning of 1000 classes would over-fit.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

CALIBRATION_FILE = "label_calibration.json"


@lru_cache(maxsize=1)
def shipped_calibration() -> dict[str, Any]:
    """label_calibration.json: the fitted temperature, for which model, from which images, and its reliability."""
    data: dict[str, Any] = json.loads(resources.files("video_ai.model").joinpath(CALIBRATION_FILE).read_text("utf-8"))
    return data


def shipped_temperature(model_name: str, model_version: str) -> float | None:
    """The temperature fitted for this image model, or None when none was (a configured model of its own)."""
    data = shipped_calibration()
    model = data["model"]
    if model["name"] != model_name or model["version"] != model_version:
        return None
    return float(data["temperature"])


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    shifted = logits / temperature
    shifted = shifted - shifted.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    out: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return out


def combine(probs: np.ndarray, owners: Sequence[int] | np.ndarray, count: int) -> np.ndarray:
    """(count, classes): each class at its best input among the rows each owner has. Not renormalised: a label's
    confidence is what the input that supports it most says (two inputs naming two classes may sum over 1)."""
    out = np.zeros((count, probs.shape[1]), dtype=np.float32)
    np.maximum.at(out, np.asarray(owners, dtype=np.intp), probs.astype(np.float32))
    return out


def _view_probabilities(views: Sequence[np.ndarray], temperature: float) -> np.ndarray:
    """(views, N, classes) calibrated distributions of aligned views."""
    return np.stack([softmax(v.astype(np.float64), temperature) for v in views])


def frame_probabilities(views: Sequence[np.ndarray], temperature: float) -> np.ndarray:
    """Per image, each class at its best view ((N, classes) logits each, e.g. the centre crop and the whole frame):
    what the labels analyzer reports."""
    result: np.ndarray = _view_probabilities(views, temperature).max(axis=0)
    return result


def best_view_probabilities(views: Sequence[np.ndarray], temperature: float) -> np.ndarray:
    """Per image, the distribution of its most confident view: a proper distribution whose top class and confidence
    are the reported top label's (`frame_probabilities`), so NLL can score it."""
    probs = _view_probabilities(views, temperature)
    best = probs.max(axis=2).argmax(axis=0)
    result: np.ndarray = probs[best, np.arange(probs.shape[1])]
    return result


def negative_log_likelihood(probs: np.ndarray, truth: np.ndarray) -> float:
    picked = probs[np.arange(len(truth)), truth]
    return float(-np.log(np.clip(picked, 1e-12, None)).mean())


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray, bins: int = 15) -> float:
    """Top-1 ECE: |accuracy - mean confidence| over equal-width confidence bins, weighted by the bins' sizes."""
    confidence = probs.max(axis=1)
    right = probs.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += float(inside.mean()) * abs(float(right[inside].mean()) - float(confidence[inside].mean()))
    return error


def reliability_bins(probs: np.ndarray, truth: np.ndarray, bins: int = 5) -> list[dict[str, float]]:
    """The reliability diagram as rows: per equal-width bin of top-1 confidence, how many, their mean confidence and
    how many were right."""
    confidence = probs.max(axis=1)
    right = probs.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            rows.append({"from": round(float(low), 2), "to": round(float(high), 2), "images": int(inside.sum()),
                         "confidence": round(float(confidence[inside].mean()), 3),
                         "accuracy": round(float(right[inside].mean()), 3)})
    return rows


def _golden_minimum(loss: Callable[[float], float], low: float, high: float, steps: int = 100) -> float:
    """The minimiser of a unimodal loss on [low, high] by golden-section search (to ~1e-6 relative after 100 steps)."""
    ratio = (5**0.5 - 1) / 2
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(steps):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    return (a + b) / 2


def fit_temperature(views: Sequence[np.ndarray], truth: np.ndarray) -> float:
    """The temperature in [0.05, 20] minimising the NLL of `best_view_probabilities(views, T)` (searched on log T)."""
    def loss(log_t: float) -> float:
        return negative_log_likelihood(best_view_probabilities(views, float(np.exp(log_t))), truth)

    return float(np.exp(_golden_minimum(loss, float(np.log(0.05)), float(np.log(20.0)))))
