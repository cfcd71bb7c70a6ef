"""Pieces of the EfficientNet-Lite0 graph builder: SAME padding, BatchNorm folding, block layout."""

from __future__ import annotations

import numpy as np
import pytest

from video_ai.model.efficientnet_lite import BN_EPS, block_specs, fold_batchnorm, same_pads


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads"),
    [
        (224, 3, 2, (0, 1)),  # TF puts the odd pixel after: PyTorch's symmetric (1, 1) would be wrong
        (112, 5, 2, (1, 2)),
        (56, 3, 2, (0, 1)),
        (112, 3, 1, (1, 1)),
        (14, 5, 1, (2, 2)),
        (7, 1, 1, (0, 0)),
        (7, 3, 2, (1, 1)),  # odd size, stride 2: symmetric again
    ],
)
def test_same_pads_match_tensorflow(size: int, kernel: int, stride: int, pads: tuple[int, int]) -> None:
    assert same_pads(size, kernel, stride) == pads


def test_block_layout_is_lite0() -> None:
    specs = block_specs()
    assert len(specs) == 16
    assert [s.index for s in specs if s.stride == 2] == [1, 3, 5, 11]
    assert [s.kernel for s in specs] == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    assert specs[0].expand == 1 and all(s.expand == 6 for s in specs[1:])
    assert specs[-1].out_channels == 320
    assert [s.index for s in specs if s.residual] == [2, 4, 6, 7, 9, 10, 12, 13, 14]


def test_fold_batchnorm_equals_conv_then_batchnorm() -> None:
    rng = np.random.default_rng(3)
    cout, cin = 6, 4
    weight = rng.normal(size=(cout, cin, 1, 1)).astype(np.float32)
    params = {
        "bn.weight": rng.uniform(0.5, 2, cout).astype(np.float32),
        "bn.bias": rng.normal(size=cout).astype(np.float32),
        "bn.running_mean": rng.normal(size=cout).astype(np.float32),
        "bn.running_var": rng.uniform(0.01, 3, cout).astype(np.float32),
    }
    x = rng.normal(size=(10, cin))
    conv = x @ weight[:, :, 0, 0].T.astype(np.float64)
    expected = (conv - params["bn.running_mean"]) / np.sqrt(params["bn.running_var"] + BN_EPS) * params[
        "bn.weight"
    ] + params["bn.bias"]

    w, b = fold_batchnorm(weight, params, "bn")

    assert w.dtype == np.float32 and b.dtype == np.float32 and w.shape == weight.shape
    np.testing.assert_allclose(x @ w[:, :, 0, 0].T + b, expected, rtol=1e-5, atol=1e-5)
    # eps matters: the PyTorch default 1e-5 would give measurably different weights for small variances
    w_wrong, _ = fold_batchnorm(weight, params, "bn", eps=1e-5)
    assert np.abs(w_wrong - w).max() > 1e-4
