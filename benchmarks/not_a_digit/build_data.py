"""Marks as the product's reader sees them, cached for the study (cache/ is not for the repository).

    python build_data.py digits --split train         # the first 54,000 training digits, each in one
                                                      # clean rendering chosen at random (seeded)
    python build_data.py digits --split validation    # the last 6,000, in all 7 clean renderings
    python build_data.py digits --split test          # the 10,000 test digits, all 7 renderings
    python build_data.py negatives --kind KIND --seed S --count N --digits train|test

Digits: every picture file goes through pictures.decode_picture then pictures.find_digits (mnist_digits/pictures.py); the main mark is kept
(what `predict` answers), with the number of marks found. Negatives: negatives.negative_marks.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import negatives  # noqa: E402
from common import CACHE, CLEAN, N_TRAIN, mnist, picture_bytes, pictures  # noqa: E402


def mnist_split(split):
    data = mnist()
    if split == "train":
        return data["x_train"][:N_TRAIN], data["y_train"][:N_TRAIN]
    if split == "validation":
        return data["x_train"][N_TRAIN:], data["y_train"][N_TRAIN:]
    return data["x_test"], data["y_test"]


def read_main_mark(data):
    """(main mark (28, 28), number of marks) of a file's bytes; (None, 0) if refused."""
    try:
        marks, main = pictures.find_digits(pictures.decode_picture(data))
    except ValueError:
        return None, 0
    return marks[main], len(marks)


def build_digits(split):
    x, y = mnist_split(split)
    names = list(CLEAN)
    if split == "train":  # one rendering each, at random
        chosen = np.random.default_rng(32).integers(len(names), size=len(x))
        plan = [[(i, names[chosen[i]]) for i in range(len(x))]]
    else:
        plan = [[(i, name) for i in range(len(x))] for name in names]
    marks = np.zeros((len(plan), len(x), 28, 28), np.float32)
    counts = np.zeros((len(plan), len(x)), np.int16)
    started = time.time()
    for r, row in enumerate(plan):
        for i, name in row:
            mark, count = read_main_mark(picture_bytes(name, x[i], i))
            counts[r, i] = count
            if mark is not None:
                marks[r, i] = mark
        print(f"{split}: rendering row {r + 1}/{len(plan)} done, {time.time() - started:.0f} s",
              flush=True)
    CACHE.mkdir(exist_ok=True)
    extra = {"rendering": np.array([names[c] for c in chosen])} if split == "train" else \
        {"renderings": np.array(names)}
    np.savez_compressed(CACHE / f"digits_{split}.npz", marks=marks, labels=y, counts=counts, **extra)
    print(f"refused: {(counts == 0).sum()}, more than one mark: {(counts > 1).sum()}")


def build_negatives(kind, seed, count, digit_split):
    digits, labels = mnist_split(digit_split) if kind in negatives.NEEDS_MNIST else (None, None)
    started = time.time()
    marks, owners, whats = negatives.negative_marks(kind, count, seed, digits, labels)
    CACHE.mkdir(exist_ok=True)
    np.savez_compressed(CACHE / f"neg_{kind}_s{seed}.npz", marks=marks, owners=owners,
                        whats=np.array(whats), pictures=count)
    print(f"{kind} seed {seed}: {count} pictures -> {len(marks)} marks "
          f"({count - len(set(owners.tolist()))} refused as blank), {time.time() - started:.0f} s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["digits", "negatives"])
    parser.add_argument("--split", choices=["train", "validation", "test"])
    parser.add_argument("--kind", choices=negatives.KINDS)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--count", type=int)
    parser.add_argument("--digits", choices=["train", "test"], default="train")
    args = parser.parse_args()
    if args.what == "digits":
        build_digits(args.split)
    else:
        build_negatives(args.kind, args.seed, args.count, args.digits)


if __name__ == "__main__":
    main()
