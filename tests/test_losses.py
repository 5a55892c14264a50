import math

import numpy as np
import pytest
import torch

from mlbert.losses import bce_loss, pos_weights


def test_bce_matches_a_hand_computed_value():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    expected = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert bce_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_pos_weight_scales_only_positive_terms():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    expected = (3 * math.log(2) + math.log(1 + math.exp(2))) / 2
    assert bce_loss(logits, targets, torch.tensor([3.0, 3.0])).item() == pytest.approx(expected, rel=1e-6)


def test_pos_weights_from_counts():
    y = np.zeros((10, 3), dtype=np.float32)
    y[:5, 0] = 1  # 5 pos, 5 neg -> 1
    y[:1, 1] = 1  # 1 pos, 9 neg -> 9
    # label 2 has no positives: ratio 10, capped at 4 below
    np.testing.assert_allclose(pos_weights(y, "auto", cap=4.0), [1.0, 4.0, 4.0])
    np.testing.assert_allclose(pos_weights(y, "auto"), [1.0, 9.0, 10.0])
    np.testing.assert_allclose(pos_weights(y, "sqrt"), [1.0, 3.0, math.sqrt(10)])
    assert pos_weights(y, "none") is None
