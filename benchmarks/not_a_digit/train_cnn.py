"""A small standalone CNN, digit vs not a digit, on the marks as the reader makes them.

    python train_cnn.py [--epochs 6] [--train-kinds font_letters scribbles digit_overlaps]

Trained on the 54,000 training digits (label 0) and the negatives of the training kinds made
with seed 1 (label 1), balanced. Writes its score (logit of "not a digit") for every cached set
to cache/score_cnn_<set>.npy (the sets evaluate.py reads) and the model to cache/cnn.keras.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import CACHE  # noqa: E402
from evaluate import TRAIN_KINDS  # noqa: E402
from negatives import KINDS  # noqa: E402


def build(keras):
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1),
    ])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-kinds", nargs="+", default=list(TRAIN_KINDS))
    parser.add_argument("--name", default="cnn")
    args = parser.parse_args()
    import keras

    keras.utils.set_random_seed(1)
    digits = np.load(CACHE / "digits_train.npz")["marks"][0]
    negs = np.concatenate([np.load(CACHE / f"neg_{k}_s1.npz")["marks"] for k in args.train_kinds])
    x = np.concatenate([digits, negs])[..., np.newaxis]
    y = np.concatenate([np.zeros(len(digits)), np.ones(len(negs))]).astype(np.float32)
    w = np.where(y == 0, 0.5 * len(x) / len(digits), 0.5 * len(x) / len(negs)).astype(np.float32)
    model = build(keras)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy(from_logits=True))
    started = time.time()
    model.fit(x, y, sample_weight=w, batch_size=128, epochs=args.epochs, verbose=2, shuffle=True)
    print(f"trained in {time.time() - started:.0f} s; {model.count_params()} parameters")
    model.save(CACHE / f"{args.name}.keras")
    sets = {"train": CACHE / "digits_train.npz", "validation": CACHE / "digits_validation.npz",
            "test": CACHE / "digits_test.npz"}
    sets.update({f"neg_{k}_s2": CACHE / f"neg_{k}_s2.npz" for k in KINDS})
    for name, path in sets.items():
        if not path.exists():
            continue
        marks = np.load(path)["marks"]
        if name == "train":
            marks = marks[0]
        shape = marks.shape[:-2]
        score = model.predict(marks.reshape(-1, 28, 28, 1), batch_size=2000, verbose=0)[:, 0]
        np.save(CACHE / f"score_{args.name}_{name}.npy", score.reshape(shape))


if __name__ == "__main__":
    main()
