"""Per-label calibration maps (calibration.py): they recover known distortions, lower the calibration error,
keep decisions under mapped thresholds, and leave a label without both classes alone."""

from __future__ import annotations

import numpy as np
import pytest

from mlbert.calibration import apply, fit, fit_affine, logits_of, map_thresholds
from mlbert.metrics import apply_thresholds, calibration_metrics


def _overconfident(n: int = 6000, temperature: float = 2.0, seed: int = 0):
    """Scores sigmoid(z) whose truth follows sigmoid(z / T): overconfident by T."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, size=(n, 3)) - 1
    truth = 1 / (1 + np.exp(-z / temperature))
    return 1 / (1 + np.exp(-z)), (rng.random(z.shape) < truth).astype(np.int8)


def test_temperature_finds_the_distortion_and_lowers_the_error():
    probs, y = _overconfident()
    fitted = fit_affine(probs, y, "temperature")
    np.testing.assert_allclose(1 / fitted["scale"], 2.0, rtol=0.15)
    assert (fitted["shift"] == 0).all()
    before, after = calibration_metrics(probs, y), calibration_metrics(apply(probs, fitted, "temperature"), y)
    assert after["ece"] < before["ece"] / 2 and after["brier"] < before["brier"]


def test_platt_finds_scale_and_shift():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, size=(8000, 2))
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-(0.5 * z + 1.0)))).astype(np.int8)
    fitted = fit_affine(1 / (1 + np.exp(-z)), y, "platt")
    np.testing.assert_allclose(fitted["scale"], 0.5, rtol=0.15)
    np.testing.assert_allclose(fitted["shift"], 1.0, atol=0.15)


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_mapped_thresholds_decide_as_before(method):
    probs, y = _overconfident(seed=2)
    fitted = fit(probs, y, method)
    calibrated = apply(probs, fitted, method)
    for cut in (0.5, np.array([0.1, 0.4, 0.8])):
        raw = apply_thresholds(probs, cut)
        np.testing.assert_array_equal(apply_thresholds(calibrated, map_thresholds(cut, fitted, 3)), raw)


def test_a_label_without_both_classes_keeps_its_scores():
    probs, y = _overconfident(seed=3)
    y[:, 1] = 0
    for method in ("temperature", "platt", "isotonic"):
        calibrated = apply(probs, fit(probs, y, method), method)
        np.testing.assert_allclose(calibrated[:, 1], probs[:, 1], atol=1e-9)


def test_isotonic_is_monotone_per_label():
    probs, y = _overconfident(seed=4)
    calibrated = apply(probs, fit(probs, y, "isotonic"), "isotonic")
    for j in range(probs.shape[1]):
        order = np.argsort(probs[:, j])
        assert (np.diff(calibrated[order, j]) >= -1e-12).all()
    assert calibration_metrics(calibrated, y)["ece"] < calibration_metrics(probs, y)["ece"]


def test_logits_survive_scores_of_exactly_0_and_1():
    assert np.isfinite(logits_of(np.array([[0.0, 1.0, 0.5]]))).all()


# -- the product: a model keeps one map (Calibration), and every path shows the same calibrated scores -------
import json  # noqa: E402
import shutil  # noqa: E402

from helpers import tiny_settings  # noqa: E402
from mlbert.calibration import (  # noqa: E402
    MAX_SCALE,
    MAX_SHIFT,
    MIN_SCALE,
    MIN_SHIFT,
    Calibration,
    choose_calibration,
    join_calibrations,
)
from mlbert.classifier import MultiLabelClassifier  # noqa: E402
from mlbert.cli import main  # noqa: E402
from mlbert.thresholds import GRID  # noqa: E402


def test_cut_offs_keep_every_decision_at_the_bounds_of_the_map():
    """The claim the product rests on: raw >= t exactly when calibrated >= cut_offs(t), for float32 scores on
    and next to every tuned cut-off, under the steepest, flattest and most shifted maps allowed."""
    cuts = np.concatenate([GRID, [0.5]])
    near = np.concatenate([cuts, np.nextafter(cuts.astype(np.float32), 0), np.nextafter(cuts.astype(np.float32), 1)])
    probs = np.concatenate([near, np.random.default_rng(0).random(5000), [0.0, 1.0]]).astype(np.float32)
    bounds = [(a, b) for a in (MIN_SCALE, 1.0, MAX_SCALE) for b in (MIN_SHIFT, 0.0, MAX_SHIFT)]
    for scale, shift in bounds:
        calibration = Calibration("platt", np.full(len(cuts), scale), np.full(len(cuts), shift))
        table = np.repeat(probs[:, None], len(cuts), axis=1)
        raw = apply_thresholds(table, cuts)
        shown = calibration.apply(table)
        np.testing.assert_array_equal((shown >= calibration.cut_offs(cuts)).astype(np.int8), raw)


def test_auto_keeps_a_map_only_where_it_helps_on_held_out_rows():
    probs, y = _overconfident(n=4000, temperature=3.0, seed=5)
    calibration, note = choose_calibration(probs, y, np.arange(2000, 4000), "auto")
    assert calibration is not None and note["method"] in ("temperature", "platt")
    assert note["heldout_ece"][note["method"]] < 0.9 * note["heldout_ece"]["none"]
    honest = (np.random.default_rng(6).random(probs.shape) < probs).astype(np.int8)  # already calibrated
    calibration, note = choose_calibration(probs, honest, np.arange(2000, 4000), "auto")
    assert calibration is None and note["method"] == "none" and "raw scores" in note["why"]
    assert choose_calibration(probs, y, np.arange(10), "auto")[0] is None  # too few held-out rows to judge
    assert choose_calibration(probs, y, np.arange(2000, 4000), "none")[0] is None
    assert choose_calibration(probs, y, np.arange(10), "temperature")[0].method == "temperature"


def test_a_large_tuning_set_is_sampled_down_and_still_judged_on_held_out_rows(monkeypatch):
    import mlbert.calibration as calibration

    monkeypatch.setattr(calibration, "MAX_FIT_ROWS", 1500)
    probs, y = _overconfident(n=4000, temperature=3.0, seed=7)
    chosen, note = choose_calibration(probs, y, np.arange(3000, 4000), "auto")
    assert chosen is not None and note["heldout_ece"][note["method"]] < 0.9 * note["heldout_ece"]["none"]


def test_a_map_round_trips_and_a_bad_one_is_refused():
    calibration = Calibration("platt", np.array([0.5, 2.0]), np.array([0.1, -0.3]))
    again = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())), 2)
    np.testing.assert_allclose(again.scale, calibration.scale)
    np.testing.assert_allclose(again.shift, calibration.shift)
    bad_maps = [
        {"method": "isotonic", "scale": [1, 1], "shift": [0, 0]},
        {"method": "platt", "scale": [1], "shift": [0]},
        {"method": "platt", "scale": [1, -1], "shift": [0, 0]},
    ]
    for bad in bad_maps:
        with pytest.raises(ValueError):
            Calibration.from_dict(bad, 2)


def test_joined_maps_keep_each_side_and_fill_in_the_identity():
    first = Calibration("temperature", np.array([0.5, 2.0]), np.zeros(2))
    joined = join_calibrations(first, 2, None, 1)
    np.testing.assert_allclose(joined.scale, [0.5, 2.0, 1.0])
    assert joined.method == "temperature"
    assert join_calibrations(None, 2, None, 3) is None
    assert join_calibrations(first, 2, Calibration("platt", np.ones(1), np.ones(1)), 1).method == "platt"


@pytest.fixture(scope="module")
def calibrated_dir(tmp_path_factory, trained_dir):
    """The shared tiny model with a map written into its mlbert.json: steep and flat labels, shifted both ways."""
    folder = tmp_path_factory.mktemp("calibrated") / "model"
    shutil.copytree(trained_dir, folder)
    manifest = json.loads((folder / "mlbert.json").read_text())
    n = len(manifest["labels"])
    manifest["calibration"] = {"method": "platt", "scale": [[3.5, 0.3][j % 2] for j in range(n)],
                               "shift": [[1.5, -2.0, 0.0][j % 3] for j in range(n)]}  # fmt: skip
    (folder / "mlbert.json").write_text(json.dumps(manifest))
    return folder


def _texts(demo_splits, n=60):
    return [r["text"] for r in demo_splits["test"][:n]]


def test_a_calibrated_model_shows_mapped_scores_and_decides_as_the_raw_one(calibrated_dir, demo_splits):
    texts = _texts(demo_splits)
    clf = MultiLabelClassifier.load(calibrated_dir)
    raw = MultiLabelClassifier.load(calibrated_dir, calibrated=False)
    assert raw.calibration_ is None and clf.calibration_.method == "platt"
    shown, scores = clf.predict_proba(texts), raw.predict_proba(texts)
    np.testing.assert_allclose(shown, clf.calibration_.apply(scores))
    np.testing.assert_array_equal(clf.predict_proba(texts, calibrated=False), scores)
    assert np.abs(shown - scores).max() > 0.05  # the map does move the scores
    for mode in ("per_label", "global", "fixed"):
        assert [set(x) for x in clf.predict(texts, mode=mode)] == [set(x) for x in raw.predict(texts, mode=mode)]
    labels = [r["labels"] for r in demo_splits["test"][:60]]
    report, report_raw = clf.evaluate(texts, labels), raw.evaluate(texts, labels)
    assert report["metrics"] == report_raw["metrics"]
    assert report["calibration"]["method"] == "platt" and report_raw["calibration"]["method"] == "none"
    assert report["calibration"]["raw"]["ece"] == pytest.approx(report_raw["calibration"]["ece"])
    from mlbert.cli.display import metrics_table

    assert "(platt-calibrated scores; raw scores: ECE" in metrics_table(report)
    assert "raw scores: ECE" not in metrics_table(report_raw)


def test_the_report_measures_the_scores_shown_and_names_the_raw_ones(calibrated_dir, demo_files, tmp_path):
    from mlbert.cli.jobs import report_job

    html = report_job(calibrated_dir, demo_files["test"], tmp_path / "c.html", progress=False, explain=False)
    assert "calibrated scores (platt per label" in html.read_text(encoding="utf-8")
    plain = report_job(calibrated_dir, demo_files["test"], tmp_path / "r.html", progress=False, explain=False,
                       calibrated=False)  # fmt: skip
    assert "The model shows raw scores (no calibration map)." in plain.read_text(encoding="utf-8")


def test_saved_onnx_and_served_scores_are_the_same_calibrated_scores(calibrated_dir, demo_splits, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mlbert.backends import OnnxModel, onnx_file
    from mlbert.export import export_onnx
    from mlbert.server import create_app

    texts = _texts(demo_splits, 8)
    clf = MultiLabelClassifier.load(calibrated_dir)
    clf.save(tmp_path / "again")  # the map travels with the folder
    again = MultiLabelClassifier.load(tmp_path / "again")
    np.testing.assert_allclose(again.predict_proba(texts), clf.predict_proba(texts), atol=1e-6)

    export_onnx(again, tmp_path / "again")
    assert json.loads(OnnxModel(onnx_file(tmp_path / "again")).metadata["calibration"]) == clf.calibration_.to_dict()
    onnx = MultiLabelClassifier.load(tmp_path / "again", backend="onnx")
    # the steepest map (scale 3.5) magnifies the backends' fp32 logit gap 3.5x: test_export's 1e-4 scaled alike
    assert np.abs(onnx.predict_proba(texts) - clf.predict_proba(texts)).max() < 3.5e-4
    assert onnx.predict(texts) == clf.predict(texts)

    with TestClient(create_app(clf)) as c:
        body = c.post("/v1/predict", json={"texts": texts, "threshold": 0.0}).json()
        cut_offs = c.get("/v1/labels").json()["thresholds"]
    shown = clf.predict_proba(texts)
    for row, prediction in zip(shown, body["predictions"]):
        for x in prediction["labels"]:
            assert x["score"] == pytest.approx(float(row[clf.labels_.index(x["label"])]), abs=1e-5)
    np.testing.assert_allclose(cut_offs, clf.thresholds_for(), atol=1e-9)


def test_predict_shows_raw_scores_with_no_calibration_and_a_bad_map_says_what_to_do(calibrated_dir, tmp_path, capsys):
    out, out_raw = tmp_path / "p.jsonl", tmp_path / "raw.jsonl"
    args = ["predict", "--model", str(calibrated_dir), "--text", "refund my money", "--quiet"]
    assert main([*args, "--output", str(out)]) == 0
    assert main([*args, "--output", str(out_raw), "--no-calibration"]) == 0
    shown, raw = (json.loads(p.read_text().splitlines()[0]) for p in (out, out_raw))
    # the same decisions (listed by score, which the map may reorder), other scores
    assert sorted(shown["labels"]) == sorted(raw["labels"]) and shown["scores"] != raw["scores"]

    broken = tmp_path / "broken"
    shutil.copytree(calibrated_dir, broken)
    manifest = json.loads((broken / "mlbert.json").read_text())
    manifest["calibration"]["scale"] = manifest["calibration"]["scale"][:-1]
    (broken / "mlbert.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["predict", "--model", str(broken), "--text", "hi", "--output", str(tmp_path / "x.jsonl")]) == 2
    assert "'calibration' is not a usable map" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()
    assert main(["predict", "--model", str(broken), "--text", "hi", "--output", str(tmp_path / "y.jsonl"),
                 "--no-calibration", "--quiet"]) == 0  # fmt: skip


def test_training_fits_the_map_it_is_asked_for_and_tune_fits_it_again(tmp_path, tiny_encoder, demo_splits):
    train, dev = demo_splits["train"], demo_splits["dev"]
    dev_data = ([r["text"] for r in dev], [r["labels"] for r in dev])
    clf = MultiLabelClassifier(**tiny_settings(tiny_encoder, calibration="temperature", epochs=1))
    clf.fit([r["text"] for r in train], [r["labels"] for r in train], dev=dev_data, progress=False)
    assert clf.calibration_.method == "temperature" and (clf.calibration_.shift == 0).all()
    assert clf.training_["calibration_choice"]["method"] == "temperature"
    clf.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "mlbert.json").read_text())["calibration"]["method"] == "temperature"
    none = MultiLabelClassifier.load(tmp_path / "m")
    none.config = none.config.replace(calibration="none")
    none.tune_thresholds(*dev_data)
    assert none.calibration_ is None
