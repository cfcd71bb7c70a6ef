"""Temperature scaling of label confidences: the fit, the reliability measures, and the shipped parameters."""

from __future__ import annotations

import numpy as np
import pytest

from video_ai.model import BUILTIN_MODEL_NAME
from video_ai.model.label_calibration import (
    best_view_probabilities,
    combine,
    expected_calibration_error,
    fit_temperature,
    frame_probabilities,
    negative_log_likelihood,
    shipped_calibration,
    shipped_temperature,
    softmax,
)
from video_ai.settings import ModelSettings


def _sample(temperature: float, count: int = 3000, classes: int = 50, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Logits and classes drawn from softmax(logits / temperature): that temperature is the calibrated one."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (count, classes))
    logits[np.arange(count), rng.integers(0, classes, count)] += rng.uniform(2.0, 8.0, count)
    probs = softmax(logits, temperature)
    truth = np.asarray([rng.choice(classes, p=row) for row in probs])
    return logits, truth


@pytest.mark.parametrize("true_temperature", [0.7, 1.6])
def test_the_fit_recovers_the_temperature_the_classes_were_drawn_with(true_temperature: float) -> None:
    logits, truth = _sample(true_temperature)
    fitted = fit_temperature([logits], truth)
    assert fitted == pytest.approx(true_temperature, rel=0.08)
    raw, calibrated = softmax(logits, 1.0), softmax(logits, fitted)
    assert expected_calibration_error(calibrated, truth) < 0.03 < expected_calibration_error(raw, truth)
    assert negative_log_likelihood(calibrated, truth) < negative_log_likelihood(raw, truth)
    # Temperature keeps each image's ranking: the top-1 accuracy does not move.
    assert (calibrated.argmax(axis=1) == raw.argmax(axis=1)).all()


def test_ece_is_zero_when_confidence_matches_accuracy_and_grows_with_overconfidence() -> None:
    truth = np.zeros(10, dtype=int)
    probs = np.zeros((10, 3))
    probs[:, 0], probs[:, 1] = 0.7, 0.3
    probs[7:] = [[0.3, 0.7, 0.0]] * 3  # 7 right at 0.7, 3 wrong at 0.7: accuracy 0.7 at confidence 0.7
    assert expected_calibration_error(probs, truth) == pytest.approx(0.0, abs=1e-9)
    sure = np.where(probs == 0.7, 0.95, np.where(probs == 0.3, 0.05, 0.0))
    assert expected_calibration_error(sure, truth) == pytest.approx(0.25)


def test_a_class_takes_its_best_view_and_nll_scores_the_most_confident_view() -> None:
    crop = np.log(np.asarray([[0.6, 0.3, 0.1]]))
    whole = np.log(np.asarray([[0.2, 0.7, 0.1]]))
    assert frame_probabilities([crop, whole], 1.0) == pytest.approx(np.asarray([[0.6, 0.7, 0.1]]))
    assert best_view_probabilities([crop, whole], 1.0) == pytest.approx(np.asarray([[0.2, 0.7, 0.1]]))
    probs = np.concatenate([softmax(crop), softmax(whole)])
    assert combine(probs, [0, 0], 1) == pytest.approx(np.asarray([[0.6, 0.7, 0.1]]))


def test_the_shipped_temperature_is_for_the_built_in_model_and_improved_held_out_reliability() -> None:
    data = shipped_calibration()
    settings = ModelSettings()
    assert (data["model"]["name"], data["model"]["version"]) == (BUILTIN_MODEL_NAME, settings.version)
    temperature = shipped_temperature(settings.name, settings.version)
    assert temperature is not None and temperature == data["temperature"] and 0.5 < temperature < 1.5
    assert shipped_temperature("clip-vit-b32", "1") is None
    held_out = data["held_out"]
    assert held_out["images"] >= 500 and data["split"]["fit"] + data["split"]["held_out"] == data["inputs"]["images"]
    assert held_out["ece_calibrated"] < held_out["ece_raw"] and held_out["nll_calibrated"] < held_out["nll_raw"]
    assert len(data["inputs"]["list_sha256"]) == 64 and data["inputs"]["commit"]
