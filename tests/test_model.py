import pytest
import torch

from mlbert.encoders import load_encoder
from mlbert.heads import pool
from mlbert.model import MultiLabelModel


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_padding_never_changes_the_output(tiny_encoder, pooling):
    torch.manual_seed(0)
    model = MultiLabelModel(load_encoder(tiny_encoder), n_labels=5, pooling=pooling).eval()
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    padded = torch.tensor([[2, 10, 11, 12, 3, 0, 0, 0]])
    mask = torch.ones_like(ids)
    padded_mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        a = model(ids, mask)
        b = model(padded, padded_mask)
    assert a.shape == (1, 5)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_mean_pooling_ignores_masked_positions():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 2.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 1.0]]


def test_encoder_is_registered_under_its_hugging_face_prefix(tiny_encoder):
    model = MultiLabelModel(load_encoder(tiny_encoder), n_labels=3)
    keys = list(model.state_dict())
    assert any(k.startswith("bert.embeddings.") for k in keys)
    assert "classifier.weight" in keys and not any("pooler" in k for k in keys)
