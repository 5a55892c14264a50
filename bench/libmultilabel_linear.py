"""LibMultiLabel's linear one-vs-rest, run in its own venv (bench/.venv-libmultilabel; see BENCHMARKS.md).

    bench/.venv-libmultilabel/bin/python bench/libmultilabel_linear.py DATA_DIR OUT.npz

Its own quick-start recipe: `linear.Preprocessor()` (its TF-IDF defaults), `linear.train_1vsrest` with
liblinear's default options, `linear.predict_values`. Writes the decision values of dev and test, the
label order and the training seconds; bench/accuracy.py tunes thresholds and scores them with mlbert's
metric code, so every system is judged the same way. Deliberately imports nothing from mlbert.
"""

import json
import sys
import time

import libmultilabel.linear as linear
import numpy as np
import pandas as pd


def frame(path):
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return pd.DataFrame({"y": [" ".join(r["labels"]) for r in rows], "x": [r["text"] for r in rows]})


def main(data_dir, out):
    started = time.perf_counter()
    train = frame(f"{data_dir}/train.jsonl")
    preprocessor = linear.Preprocessor()
    data = preprocessor.fit_transform(linear.load_dataset("dataframe", train, frame(f"{data_dir}/dev.jsonl")))
    model = linear.train_1vsrest(data["train"]["y"], data["train"]["x"], options="", verbose=False)
    values = {"dev": np.asarray(linear.predict_values(model, data["test"]["x"]))}
    test = preprocessor.transform(linear.load_dataset("dataframe", None, frame(f"{data_dir}/test.jsonl")))
    values["test"] = np.asarray(linear.predict_values(model, test["test"]["x"]))
    seconds = time.perf_counter() - started
    np.savez(out, labels=np.array(list(preprocessor.label_mapping)), seconds=seconds, **values)


if __name__ == "__main__":
    main(*sys.argv[1:3])
