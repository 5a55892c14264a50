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


def test_focal_loss_hand_computed_and_equal_to_bce_at_gamma_zero():
    from mlbert.losses import focal_loss

    zero = torch.zeros(1, 2)
    targets = torch.tensor([[1.0, 0.0]])
    # p = 0.5 everywhere: each cell is 0.5^2 * log 2
    assert focal_loss(zero, targets, gamma=2.0).item() == pytest.approx(0.25 * math.log(2), rel=1e-6)
    logits = torch.tensor([[1.5, -0.3], [-2.0, 0.7]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert focal_loss(logits, targets, gamma=0.0).item() == pytest.approx(bce_loss(logits, targets).item(), rel=1e-6)
    # An easy cell (p_t = 0.95) is turned down far more than a hard one (p_t = 0.5).
    easy = focal_loss(torch.tensor([[math.log(19)]]), torch.tensor([[1.0]])).item()
    assert easy / -math.log(0.95) < 0.01


def test_asymmetric_loss_hand_computed():
    from mlbert.losses import asymmetric_loss

    zero = torch.zeros(1, 2)
    targets = torch.tensor([[1.0, 0.0]])
    # positive: gamma_pos 0 -> log 2; negative: p_m = 0.45 -> 0.45^4 * -log(0.55)
    expected = (math.log(2) + 0.45**4 * -math.log(0.55)) / 2
    assert asymmetric_loss(zero, targets).item() == pytest.approx(expected, rel=1e-6)
    logits = torch.tensor([[1.5, -0.3], [-2.0, 0.7]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    plain = asymmetric_loss(logits, targets, gamma_pos=0.0, gamma_neg=0.0, clip=0.0).item()
    assert plain == pytest.approx(bce_loss(logits, targets).item(), rel=1e-6)
    # A negative with p below the clip margin costs nothing.
    assert asymmetric_loss(torch.tensor([[-4.0]]), torch.tensor([[0.0]])).item() == 0.0


def test_make_loss_applies_pos_weight_to_every_loss():
    from mlbert.losses import make_loss

    logits, targets = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
    for name in ("bce", "focal", "asl"):
        plain = make_loss(name)(logits, targets).item()
        weighted = make_loss(name, torch.tensor([3.0, 3.0]))(logits, targets).item()
        assert weighted > plain
    with pytest.raises(ValueError):
        make_loss("hinge")
