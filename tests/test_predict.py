import numpy as np
import torch

from mlbert.batching import encode
from mlbert.encoders import load_encoder, load_tokenizer
from mlbert.model import MultiLabelModel
from mlbert.predict import decide, predict_proba


def test_decide_thresholds_top_k_and_at_least_one():
    probs = np.array([[0.9, 0.6, 0.1], [0.2, 0.3, 0.1]])
    labels = ["a", "b", "c"]
    assert decide(probs, 0.5, labels) == [["a", "b"], []]
    assert decide(probs, 0.5, labels, top_k=1) == [["a"], []]
    assert decide(probs, 0.5, labels, at_least_one=True) == [["a", "b"], ["b"]]
    assert decide(probs, np.array([0.95, 0.5, 0.05]), labels) == [["b", "c"], ["c"]]
    assert decide(probs, 0.0, labels, top_k=2) == [["a", "b"], ["b", "a"]]


def test_batched_length_sorted_predictions_equal_one_at_a_time(tiny_encoder):
    torch.manual_seed(0)
    model = MultiLabelModel(load_encoder(tiny_encoder), 4, pooling="mean").eval()
    tok = load_tokenizer(tiny_encoder)
    texts = [
        "refund please",
        "the app crashes on my iphone every time i open the calendar",
        "hello",
        "my order has not arrived",
        "thanks",
    ]
    batched = predict_proba(model, encode(tok, texts, 32), batch_size=2)
    single = np.vstack([predict_proba(model, encode(tok, [t], 32), batch_size=1) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert batched.shape == (5, 4) and ((batched > 0) & (batched < 1)).all()
