"""Digits drawn as pen strokes, by the same hand as the stroke letters (negatives.hand, draw,
as_picture), or typed in the fonts of the font letters (negatives.typed; --style font): a check
that a gate rejects letters and doodles for what they are, not for being drawn by this program
rather than written by MNIST's writers.

    python stroke_digits.py build --seed 1 --count 10000   # cache/stroke_digits_s1.npz
    python stroke_digits.py build --style font --seed 2    # cache/font_digits_s2.npz
    python stroke_digits.py sheet --seed 2                 # sheets/stroke_digits.png: 16 of each
    python stroke_digits.py measure cache/GATE.keras [...] [--style font] --seed 2
                                    [--threshold-from results/NAME.json]

`measure`: the share of the seed's stroke (or font) digits the gate (the networks' eleventh
outputs averaged) calls "not a digit" at the thresholds of gate.py's results file, and what the
shipped model reads them as; written to results/STYLE_digits_NAME.json.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_data import read_main_mark  # noqa: E402
from common import CACHE, HERE, MODEL  # noqa: E402
from gate import averaged  # noqa: E402
from negatives import arc, as_picture, draw, hand, typed  # noqa: E402

DIGIT_STROKES = {  # each digit in the ways people write it, strokes in a box 0..1 high (y down)
    0: [[arc(0.4, 0.5, 0.38, 0.5, -90, 280)]],
    1: [[[(0, 0), (0, 1)]], [[(-0.25, 0.22), (0, 0), (0, 1)]],
        [[(-0.25, 0.22), (0, 0), (0, 1)], [(-0.25, 1), (0.25, 1)]]],
    2: [[arc(0.4, 0.3, 0.4, 0.3, -180, 30) + [(0, 1), (0.85, 1)]],
        [arc(0.4, 0.3, 0.4, 0.3, -170, 20) + [(0.05, 1), (0.2, 0.9), (0.85, 1)]]],
    3: [[arc(0.4, 0.25, 0.4, 0.25, -150, 90) + arc(0.4, 0.75, 0.42, 0.25, -90, 150)],
        [[(0, 0), (0.8, 0), (0.3, 0.45)] + arc(0.4, 0.72, 0.42, 0.28, -90, 150)]],
    4: [[[(0.55, 0), (0, 0.65), (0.85, 0.65)], [(0.6, 0.35), (0.6, 1)]],
        [[(0, 0), (0, 0.6), (0.8, 0.6)], [(0.7, 0), (0.7, 1)]]],
    5: [[[(0.8, 0), (0.1, 0), (0.08, 0.46)] + arc(0.4, 0.68, 0.4, 0.32, -140, 150)],
        [[(0.1, 0), (0.08, 0.46)] + arc(0.4, 0.68, 0.4, 0.32, -140, 150), [(0.1, 0), (0.8, 0)]]],
    6: [[[(0.65, 0), (0.3, 0.3), (0.05, 0.7)] + arc(0.4, 0.7, 0.35, 0.3, 180, 540)]],
    7: [[[(0, 0), (0.8, 0), (0.3, 1)]], [[(0, 0), (0.8, 0), (0.3, 1)], [(0.25, 0.5), (0.75, 0.5)]],
        [[(0, 0.15), (0, 0), (0.8, 0), (0.4, 1)]]],
    8: [[arc(0.4, 0.25, 0.3, 0.25, 90, 450) + arc(0.4, 0.75, 0.38, 0.25, -90, 270)]],
    9: [[arc(0.4, 0.28, 0.38, 0.28, 0, 360) + [(0.78, 0.28), (0.72, 1)]],
        [arc(0.4, 0.28, 0.38, 0.28, 0, 360) + [(0.78, 0.28), (0.7, 0.8)] + arc(0.45, 0.8, 0.25, 0.2, 0, 150)]],
}


def stroke_digit_pictures(count, seed, style="stroke"):
    """`count` (file bytes, digit) pairs: a digit (uniform), one of its ways drawn by hand
    ("stroke"), or typed in a random font ("font")."""
    rng = np.random.default_rng([100 if style == "stroke" else 101, seed])
    made = []
    for _ in range(count):
        digit = int(rng.integers(10))
        if style == "font":
            ink, _ = typed(rng, str(digit))
        else:
            ways = DIGIT_STROKES[digit]
            ink = draw(hand(ways[rng.integers(len(ways))], rng), rng)
        data, _ = as_picture(ink, rng)
        made.append((data, digit))
    return made


def build(count, seed, style):
    marks, labels = [], []
    for data, digit in stroke_digit_pictures(count, seed, style):
        mark, _ = read_main_mark(data)
        if mark is not None:
            marks.append(mark)
            labels.append(digit)
    np.savez_compressed(CACHE / f"{style}_digits_s{seed}.npz", marks=np.array(marks, np.float32),
                        labels=np.array(labels, np.uint8))
    print(f"{style} digits, seed {seed}: {count} pictures, {len(marks)} marks")


def sheet(seed, style):
    from PIL import Image
    data = np.load(CACHE / f"{style}_digits_s{seed}.npz")
    rows = [np.hstack(data["marks"][data["labels"] == digit][:16]) for digit in range(10)]
    image = Image.fromarray(np.uint8(255 * np.vstack(rows)))
    image.resize((image.width * 2, image.height * 2), Image.Resampling.NEAREST).save(
        HERE / "sheets" / f"{style}_digits.png")


def measure(gates, seed, style, results_file, name):
    """Printed, and written to results/NAME.json."""
    import keras
    data = np.load(CACHE / f"{style}_digits_s{seed}.npz")
    x, labels = data["marks"][..., np.newaxis], data["labels"]
    shipped = keras.models.load_model(MODEL).predict(x, batch_size=1000, verbose=0)
    gate = averaged([keras.models.load_model(path) for path in gates], keras)
    score = gate.predict(x, batch_size=1000, verbose=0)[:, 10]
    right = shipped.argmax(1) == labels
    results = {"gates": gates, "style": style, "seed": seed, "digits": len(x),
               "shipped_accuracy": float(right.mean())}
    print(f"{len(x)} {style} digits (seed {seed}): the shipped model reads {right.mean():.2%}")
    for rate, row in json.loads((HERE / results_file).read_text()).items():
        if not isinstance(row, dict) or "threshold" not in row:
            continue
        rejected = score > row["threshold"]
        per_digit = [float(rejected[labels == d].mean()) for d in range(10)]
        results[rate] = {"threshold": row["threshold"], "rejected": float(rejected.mean()),
                         "rejected_per_digit": per_digit,
                         "accuracy_with_rejects_wrong": float((right & ~rejected).mean())}
        print(f"rate {rate} (threshold {row['threshold']:.4f}): called not a digit "
              f"{rejected.mean():.1%} (" + ", ".join(f"{d}: {r:.0%}" for d, r in enumerate(per_digit))
              + f"); read right and not rejected {(right & ~rejected).mean():.2%}")
    (HERE / "results" / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["build", "sheet", "measure"])
    parser.add_argument("gates", nargs="*")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--style", choices=["stroke", "font"], default="stroke")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--threshold-from", default="results/gate_noaug_e8.json")
    parser.add_argument("--name", help="measure: results/NAME.json (default: STYLE_digits_ and "
                                       "the threshold file's name)")
    args = parser.parse_args()
    if args.what == "build":
        build(args.count, args.seed, args.style)
    elif args.what == "sheet":
        sheet(args.seed, args.style)
    else:
        name = args.name or f"{args.style}_digits_" + Path(args.threshold_from).stem
        measure(args.gates, args.seed, args.style, args.threshold_from, name)


if __name__ == "__main__":
    main()
