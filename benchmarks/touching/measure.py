"""Measure the product's touching split (mnist_digits/touching.py: the cut, and where the model
directory has one the reader of the whole mark) against the same reading without it: the
benchmark's touching renderings of the first N test digits
(benchmarks/renderings.py), a fifth touching rendering drawn otherwise (varied_pair), and
pictures with no digit the "not a digit" network never trained on (benchmarks/not_a_digit/
negatives.py, seed 2: letters drawn as strokes, doodles, words).

    python benchmarks/touching/measure.py --data path/to/mnist [--limit 300]
        [--touching benchmarks/not_a_digit/cache/touch12_s2] [--save-as STEM]

With --touching (a folder holding touch_recipe.py's twelve-output model.tflite), that network
decides instead of the model directory's not_a_digit/: "not a digit" is its last two outputs
together, above the threshold that rejects 0.05% of the validation digits' marks in the study's
seven clean renderings (cache/digits_validation.npz), and the share of the test digits' marks
(cache/digits_test.npz) it calls "not a digit" is measured too.
Results: benchmarks/results/STEM.json and .md (default STEM: touching_split).
"""

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(ROOT), str(HERE), str(HERE.parent), str(HERE.parent / "not_a_digit")]
from common import CACHE  # noqa: E402
from mnist_digits import mnist_files, pictures  # noqa: E402
from mnist_digits.classifier import (Gate, answer_digits, load_classifier, load_gate,  # noqa: E402
                                     load_network, load_reader, picture_answerer)
from negatives import negative_pictures  # noqa: E402
from renderings import DIGITS_PER_FILE, RENDERINGS  # noqa: E402

ROWS = [name for name, (kind, _) in RENDERINGS.items() if kind == "touching"]
VARIED = "two digits touching, other sizes and heights (held out)"
NEGATIVES = ["stroke_letters", "doodles", "words"]
RATE = 0.0005  # of the validation digits' marks called "not a digit": the shipped gate's


def touching_gate(folder):
    """The Gate of a twelve-output network (the product's: its outputs 10 and 11 added up), its
    threshold at RATE of the validation digits."""
    network = load_network(Path(folder), (12,), None, "")
    validation = np.load(CACHE / "digits_validation.npz")["marks"].reshape(-1, 28, 28, 1)
    not_digit = Gate.no_digit_score(network(validation))
    return Gate(network, float(np.quantile(not_digit, 1 - RATE)))


def read(answer, data):
    """The digits a picture answerer reads in the file, left to right (None: not a digit); []
    if refused."""
    try:
        reading = answer(pictures.decode_picture(data))
    except ValueError:
        return []
    return reading.get("digits") or [reading["digit"]]


def varied_pair(digit, index, other):
    """Two test digits touching, drawn otherwise than renderings.py draws them (and than the
    twelve-output network's training marks): each scaled by 0.8-1.2 and shifted up or down by
    up to 4 px (at MNIST's scale), boxes overlapping by 1-3 px, shown 84 px tall, softened by a
    0.7 px blur, dark on white with a 20 px margin."""
    from PIL import Image
    from scipy import ndimage

    rng = np.random.default_rng(500_000 + index)
    boxes = []
    for ink in (digit, other):
        cols = np.flatnonzero(ink.max(axis=0))
        box = Image.fromarray(ink[:, cols.min():cols.max() + 1])
        scale = rng.uniform(0.8, 1.2)
        boxes.append(np.asarray(box.resize((max(1, round(box.width * scale)), round(28 * scale)),
                                           Image.Resampling.BILINEAR), np.float32) / 255)
    tops = rng.integers(-4, 5, 2) + 6
    left = boxes[0].shape[1] - min(rng.integers(1, 4), min(b.shape[1] for b in boxes) // 2)
    strip = np.zeros((tops.max() + max(b.shape[0] for b in boxes) + 1, left + boxes[1].shape[1]),
                     np.float32)
    for box, top, start in zip(boxes, tops, (0, left)):
        strip[top:top + box.shape[0], start:start + box.shape[1]] += box
    shown = Image.fromarray(np.clip(strip, 0, 1)).resize(
        (round(strip.shape[1] * 84 / strip.shape[0]), 84), Image.Resampling.BICUBIC)
    page = np.pad(ndimage.gaussian_filter(np.clip(np.asarray(shown), 0, 1), 0.7), 20)
    return Image.fromarray(np.round(255 * (1 - np.clip(page, 0, 1))).astype(np.uint8)), "PNG", {}


def encoded(image, fmt, options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA"))
    parser.add_argument("--model-dir", default=str(ROOT / "mnist_digit_recognition_model"))
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--touching", help="a folder with a twelve-output model.tflite")
    parser.add_argument("--save-as", default="touching_split")
    args = parser.parse_args()
    twelve = touching_gate(args.touching) if args.touching else None
    classify = load_classifier(args.model_dir)
    gate = twelve or load_gate(args.model_dir)
    readers = {"no split": lambda grey: answer_digits(classify, *pictures.find_digits(grey), gate),
               # as the server reads a picture: the cut, and the model directory's reader
               "split": picture_answerer(classify, gate, load_reader(args.model_dir))}
    arrays = mnist_files.read_mnist_arrays(args.data)
    x, y = arrays["x_test"][:args.limit], arrays["y_test"][:args.limit]
    results = {"files": len(x), "command": "python benchmarks/touching/measure.py " + " ".join(sys.argv[1:]),
               "rows": {}, "negatives": {}}
    if twelve:
        test = np.load(CACHE / "digits_test.npz")["marks"].reshape(-1, 28, 28, 1)
        results["threshold"] = twelve.threshold
        results["test_digits_not_a_digit"] = float(gate(test).mean())
        print(f"threshold {twelve.threshold:.4f}; test digits' marks called not a digit: "
              f"{results['test_digits_not_a_digit']:.3%}", flush=True)
    for name in [*ROWS, VARIED]:
        started = time.time()
        count, render = (2, varied_pair) if name == VARIED else (DIGITS_PER_FILE[name], RENDERINGS[name][1])
        right = {reader: 0 for reader in readers}
        seconds = {reader: 0.0 for reader in readers}
        for index, digit in enumerate(x):
            data = encoded(*render(digit, index, *(x[(index + k) % len(x)] for k in range(1, count))))
            expected = [int(y[(index + k) % len(y)]) for k in range(count)]
            for reader, answer in readers.items():
                start = time.process_time()
                right[reader] += read(answer, data) == expected
                seconds[reader] += time.process_time() - start
        results["rows"][name] = {reader: right[reader] / len(x) for reader in readers}
        results["rows"][name]["ms_per_picture"] = {r: round(1000 * s / len(x), 1) for r, s in seconds.items()}
        print(name, results["rows"][name], f"({time.time() - started:.0f} s)", flush=True)
    for kind in NEGATIVES:
        said = {reader: 0 for reader in readers}
        files = negative_pictures(kind, args.limit, 2)
        for data, _, _ in files:
            for reader, answer in readers.items():
                said[reader] += all(digit is None for digit in read(answer, data))
        results["negatives"][kind] = {reader: said[reader] / len(files) for reader in readers}
        print(kind, results["negatives"][kind], flush=True)
    (HERE.parent / "results" / f"{args.save_as}.json").write_text(json.dumps(results, indent=1) + "\n")
    names = " | ".join(readers)
    lines = ["# Digits that touch: the product's split (mnist_digits/touching.py), and without it",
             "", f"The first {len(x)} test digits per row; `{results['command']}`."
             + (f" The twelve-output network calls {results['test_digits_not_a_digit']:.3%} of the "
                f"test digits' marks \"not a digit\" (threshold {results['threshold']:.4f})."
                if twelve else ""), "",
             f"| rendering | {names} | ms per picture ({', '.join(readers)}) |",
             "|---|" + "---:|" * (len(readers) + 1)]
    for name, row in results["rows"].items():
        ms = ", ".join(str(row["ms_per_picture"][reader]) for reader in readers)
        lines.append(f"| {name} | " + " | ".join(f"{row[r]:.1%}" for r in readers) + f" | {ms} |")
    lines += ["", f"| pictures with no digit (never trained on), all marks \"not a digit\" | {names} |",
              "|---|" + "---:|" * len(readers)]
    lines += [f"| {kind} | " + " | ".join(f"{row[r]:.1%}" for r in readers) + " |"
              for kind, row in results["negatives"].items()]
    (HERE.parent / "results" / f"{args.save_as}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
