"""The HTML report: every section present, numbers computed from the data, user text escaped, self-contained."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from mlbert.cli import main
from mlbert.metrics import compute_metrics
from mlbert.report import ReportInput, build_context, confident_mistakes, make_report, per_label_rows
from mlbert.thresholds import Thresholds

SECTIONS = (
    "summary",
    "training",
    "labels",
    "pr",
    "threshold",
    "calibration",
    "cooccurrence",
    "cardinality",
    "mistakes",
)
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class Page(HTMLParser):
    """What a browser would see: tags with attributes, script bodies, visible text."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "style":
            self.styles.append(data)
        else:
            self.text.append(data)

    def find(self, tag: str, **attrs) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def _sample(n: int = 120, n_labels: int = 6, seed: int = 0) -> ReportInput:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < np.linspace(0.5, 0.02, n_labels)).astype(np.int8)
    probs = np.clip(0.6 * y + 0.5 * rng.random((n, n_labels)) - 0.1, 0, 1).astype(np.float32)
    labels = [f"label{j}" for j in range(n_labels - 1)] + [EVIL]  # label names are user data too
    texts = [f"text number {i}" for i in range(n)]
    texts[0] = EVIL + " & more"
    events = [{"event": "start"}] + [
        {"event": "step", "step": s, "epoch": 1 + s // 10, "loss": 1 / s} for s in range(1, 21)
    ]
    events += [
        {
            "event": "epoch",
            "epoch": e,
            "step": 10 * e,
            "train_loss": 0.5 / e,
            "dev_loss": 0.4 / e,
            "dev_micro_f1": 0.5 + 0.1 * e,
            "dev_macro_f1": 0.3 + 0.1 * e,
            "seconds": 3.0,
        }
        for e in (1, 2)
    ]
    return ReportInput(
        probs=probs,
        targets=y,
        texts=texts,
        labels=labels,
        thresholds=Thresholds(global_=0.45, per_label=np.linspace(0.3, 0.6, n_labels)),
        default_mode="per_label",
        events=events,
        about={"model": "m", "data": EVIL},
        warnings=["the model has collapsed " + EVIL],
    )


def test_every_section_is_present_and_every_image_is_an_embedded_svg():
    page = Page(make_report(_sample()))
    ids = {a.get("id") for _, a in page.tags}
    assert set(SECTIONS) <= ids
    images = page.find("img")
    assert len(images) == 7  # training, support, pr, threshold, calibration, co-occurrence, cardinality
    for img in images:
        src = img["src"]
        assert src.startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(src.split(",", 1)[1])
        assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg and len(svg) > 2000
        assert img["alt"]


def test_nothing_outside_the_file_is_referenced():
    html = make_report(_sample())
    page = Page(html)
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:", "#")), (tag, value)
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_user_text_and_label_names_are_escaped_and_cannot_run():
    html = make_report(_sample())
    page = Page(html)
    assert len(page.scripts) == 1  # ours; nothing from the data became a script element
    assert "alert" not in page.scripts[0]
    assert not [a for _, a in page.tags if "onerror" in a]
    assert EVIL in "".join(page.text)  # shown as text, not markup
    # The policy allows exactly our script and style by hash: even a missed escape could not run.
    csp = page.find("meta", **{"http-equiv": "Content-Security-Policy"})[0]["content"]
    for body in (page.scripts[0], page.styles[0]):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp


def test_headline_numbers_are_the_metrics_of_the_data():
    data = _sample()
    ctx = build_context(data)
    for mode in ("fixed", "global", "per_label"):
        expected = compute_metrics(data.probs, data.targets, data.thresholds.for_mode(mode))
        assert ctx["metrics"][mode]["micro_f1"] == pytest.approx(expected["micro_f1"])
    html = make_report(data)
    assert f"{ctx['metrics']['per_label']['macro_f1']:.4f}" in html
    from mlbert.metrics import calibration_metrics

    assert f"{calibration_metrics(data.probs, data.targets)['ece']:.4f}" in html


def test_per_label_table_has_pr_auc_and_every_label():
    data = _sample()
    rows = per_label_rows(data.probs, data.targets, data.thresholds.per_label, data.labels)
    assert [r["label"] for r in rows] == data.labels
    from sklearn.metrics import average_precision_score

    assert rows[0]["pr_auc"] == pytest.approx(average_precision_score(data.targets[:, 0], data.probs[:, 0]))
    page = Page(make_report(data))
    table_rows = [a for t, a in page.tags if t == "tr"]
    assert len(table_rows) >= len(data.labels)


def test_confident_mistakes_come_most_confident_first():
    probs = np.array([[0.99, 0.1], [0.6, 0.1], [0.2, 0.9], [0.1, 0.02]])
    y = np.array([[0, 0], [0, 0], [1, 1], [0, 1]])
    out = confident_mistakes(probs, y, ["a", "b", "c", "d"], ["x", "y"], 0.5, n=10)
    # a: false x at 0.99; d: missed y at 0.02 (confidence 0.98); c: missed x (0.8); b: false x (0.6)
    assert [m["text"] for m in out] == ["a", "d", "c", "b"]
    assert out[0]["false"] == [("x", pytest.approx(0.99))] and out[1]["missed"] == [("y", pytest.approx(0.02))]
    assert out[2]["predicted"] == [("y", pytest.approx(0.9))]
    assert confident_mistakes(probs, y, list("abcd"), ["x", "y"], 0.5, n=2)[1]["text"] == "d"


def test_perfect_predictions_list_no_mistakes_and_no_log_says_so():
    y = np.array([[1, 0], [0, 1], [1, 1]])
    data = ReportInput(
        probs=y.astype(np.float32),
        targets=y,
        texts=["a", "b", "c"],
        labels=["p", "q"],
        thresholds=Thresholds(global_=0.5, per_label=np.full(2, 0.5)),
        default_mode="per_label",
    )
    html = make_report(data)
    assert "No mistakes on this data." in html and "No training log" in html
    assert len(Page(html).find("img")) == 6  # all but the training curves


def test_long_texts_are_cut_to_a_snippet():
    data = _sample()
    data.texts[0] = "word " * 500
    mistakes = build_context(data, n_mistakes=200)["mistakes"]
    assert max(len(m["text"]) for m in mistakes) <= 300


def test_report_command_writes_a_page_for_a_trained_model(tmp_path, trained_dir, demo_files, capsys):
    out = tmp_path / "report.html"
    assert (
        main(["report", "--model", str(trained_dir), "--data", str(demo_files["test"]), "--out", str(out), "--quiet"])
        == 0
    )
    page = Page(out.read_text(encoding="utf-8"))
    assert set(SECTIONS) <= {a.get("id") for _, a in page.tags}
    assert len(page.find("img")) == 7  # the folder's train_log.jsonl gives the training curves
    labels = json.loads((trained_dir / "mlbert.json").read_text())["labels"]
    shown = "".join(page.text)
    assert all(label in shown for label in labels)
    marks = page.find("mark")
    assert marks and {m["class"] for m in marks} <= {"for", "against"}  # each mistake's words, highlighted


def test_mistakes_highlight_the_words_that_drove_them():
    from mlbert.explain import WordAttribution
    from mlbert.report.page import highlighted

    text = "the <b>bold</b> refund was late"
    words = [WordAttribution(t.start(), t.end(), t.group(), a)
             for t, a in zip(re.finditer(r"\S+", text), [0.01, -0.6, 0.9, 0.02, 0.3])]  # fmt: skip
    pieces = highlighted(text, words, 0, 3)
    assert "".join(p for p, _, _ in pieces) == text
    assert [(p, kind) for p, kind, _ in pieces if kind] == [("<b>bold</b>", "against"), ("refund", "for"),
                                                           ("late", "for")]  # fmt: skip
    assert highlighted(text[4:], words, 4, 1) == [("<b>bold</b> ", None, 0.0), ("refund", "for", 0.9),
                                                  (" was late", None, 0.0)]  # fmt: skip
    data = _sample()
    data.texts[0] = text
    data.targets[0], data.probs[0] = 0, 0.001
    data.probs[0, 1] = 0.9999  # the most confident mistake of all: a false label1
    data.explain = lambda t, label: words if (t, label) == (text, "label1") else []
    html = make_report(data)
    assert '<mark class="against" title="-0.600">&lt;b&gt;bold&lt;/b&gt;</mark>' in html
    assert "<b>bold" not in html and "refund +0.90" in html


def test_report_command_refuses_bad_input_and_writes_nothing(tmp_path, trained_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "labels": ["billing"]}\n{"text": "no labels here"}\n', encoding="utf-8")
    out = tmp_path / "report.html"
    assert main(["report", "--model", str(trained_dir), "--data", str(bad), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".report.html.*"))
    assert main(["report", "--model", str(tmp_path / "none"), "--data", str(bad), "--out", str(out)]) == 2


def test_train_with_report_writes_it_beside_the_model(tmp_path, tiny_encoder, demo_files, capsys):
    out = tmp_path / "run"
    argv = [
        "train",
        "--train",
        str(demo_files["dev"]),
        "--dev",
        str(demo_files["dev"]),
        "--out",
        str(out),
        "--model",
        str(tiny_encoder),
        "--epochs",
        "1",
        "--max-length",
        "32",
        "--batch-size",
        "16",
        "--pooling",
        "mean",
        "--save-steps",
        "0",
        "--report",
        "--quiet",
    ]
    assert main(argv) == 0
    assert "report: " in capsys.readouterr().out
    html = (out / "report.html").read_text(encoding="utf-8")
    assert re.search(r"<dd>[^<]*dev\.jsonl</dd>", html)  # no --test: the report is on dev
