"""Marks of digits that touch, made from MNIST's training digits (the 54,000 the shipped model
trained on), for a "digits that touch" output of the "not a digit" network (touch_recipe.py).

Each picture is renderings.py's touching rendering (two or three digits, boxes overlapping by 1-4
px, or joined by a stroke) of training digits i, i+1 (, i+2) in a random order; the product's
reader (pictures.find_digits) reads it, and a picture it reads as one mark gives that mark
(a picture read as several marks gives none: those marks are digits, or a pair in a triple).

    python benchmarks/touching/build_touching.py --count 12000 --seed 1

Writes benchmarks/not_a_digit/cache/touching_sSEED.npz (marks, and the digits each holds).
"""

import argparse
import io
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent), str(HERE.parent / "not_a_digit")]
from common import CACHE, N_TRAIN, mnist  # noqa: E402
from mnist_digits import pictures  # noqa: E402
from renderings import touching  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    marks, holds = [], []
    for grey, digits in touching_pictures(args.count, args.seed):
        found, _ = pictures.find_digits(grey)
        if len(found) == 1:
            marks.append(found[0])
            holds.append(digits)
    np.savez_compressed(CACHE / f"touching_s{args.seed}.npz", marks=np.array(marks, np.float32),
                        holds=np.array(holds))
    print(f"{len(marks)} marks of {args.count} pictures (the others read as several marks)")


def touching_pictures(count, seed):
    """`count` pictures of two or three training digits touching, as the product decodes them
    (grey), each with the digits it holds ("926")."""
    rng = np.random.default_rng(seed)
    arrays = mnist()
    x, y = arrays["x_train"][:N_TRAIN], arrays["y_train"][:N_TRAIN]
    for index in range(count):
        digits, stroke = rng.integers(2, 4), bool(rng.integers(2))
        chosen = rng.choice(len(x), digits, replace=False)
        image, fmt, options = touching(list(x[chosen]), 1_000_000 * seed + index, stroke)
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        yield pictures.decode_picture(buffer.getvalue()), "".join(map(str, y[chosen]))


if __name__ == "__main__":
    main()
