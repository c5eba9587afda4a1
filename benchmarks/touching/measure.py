"""Measure the touching split of split.py against the product's reader (pictures.find_digits):
the benchmark's touching renderings of the first N test digits (benchmarks/renderings.py), and
pictures with no digit the "not a digit" network never trained on (benchmarks/not_a_digit/
negatives.py, seed 2: letters drawn as strokes, doodles, words).

    python benchmarks/touching/measure.py --data path/to/mnist [--limit 300]

Results: benchmarks/results/touching_split.json and .md.
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
import split  # noqa: E402
from mnist_digits import mnist_files, pictures  # noqa: E402
from negatives import negative_pictures  # noqa: E402
from renderings import DIGITS_PER_FILE, RENDERINGS  # noqa: E402

ROWS = [name for name, (kind, _) in RENDERINGS.items() if kind == "touching"]
NEGATIVES = ["stroke_letters", "doodles", "words"]


def read(find, data, classify, gate):
    """The digits find reads in the file, left to right (None: not a digit); [] if refused."""
    try:
        marks, _ = find(pictures.decode_picture(data))
    except ValueError:
        return []
    images = marks[..., np.newaxis]
    return [None if none else int(digit)
            for digit, none in zip(classify(images).argmax(axis=1), gate(images))]


def encoded(image, fmt, options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA"))
    parser.add_argument("--model-dir", default=str(ROOT / "mnist_digit_recognition_model"))
    parser.add_argument("--limit", type=int, default=300)
    args = parser.parse_args()
    judge, classify, gate = split.load_judge(args.model_dir)
    readers = {"product": pictures.find_digits, "split": lambda grey: split.find_digits(grey, judge)}
    arrays = mnist_files.read_mnist_arrays(args.data)
    x, y = arrays["x_test"][:args.limit], arrays["y_test"][:args.limit]
    results = {"files": len(x), "command": "python benchmarks/touching/measure.py " + " ".join(sys.argv[1:]),
               "rows": {}, "negatives": {}}
    for name in ROWS:
        started, count = time.time(), DIGITS_PER_FILE[name]
        render = RENDERINGS[name][1]
        right = {reader: 0 for reader in readers}
        seconds = {reader: 0.0 for reader in readers}
        for index, digit in enumerate(x):
            data = encoded(*render(digit, index, *(x[(index + k) % len(x)] for k in range(1, count))))
            expected = [int(y[(index + k) % len(y)]) for k in range(count)]
            for reader, find in readers.items():
                start = time.process_time()
                right[reader] += read(find, data, classify, gate) == expected
                seconds[reader] += time.process_time() - start
        results["rows"][name] = {reader: right[reader] / len(x) for reader in readers}
        results["rows"][name]["ms_per_picture"] = {r: round(1000 * s / len(x), 1) for r, s in seconds.items()}
        print(name, results["rows"][name], f"({time.time() - started:.0f} s)", flush=True)
    for kind in NEGATIVES:
        said = {reader: 0 for reader in readers}
        files = negative_pictures(kind, args.limit, 2)
        for data, _, _ in files:
            for reader, find in readers.items():
                said[reader] += all(digit is None for digit in read(find, data, classify, gate))
        results["negatives"][kind] = {reader: said[reader] / len(files) for reader in readers}
        print(kind, results["negatives"][kind], flush=True)
    (HERE.parent / "results" / "touching_split.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["# Digits that touch: the study's split (benchmarks/touching/split.py) beside the product",
             "", f"The first {len(x)} test digits per row; `{results['command']}`.", "",
             "| rendering | product | split | ms per picture (product, split) |", "|---|---:|---:|---:|"]
    for name, row in results["rows"].items():
        ms = row["ms_per_picture"]
        lines.append(f"| {name} | {row['product']:.1%} | {row['split']:.1%} | {ms['product']}, {ms['split']} |")
    lines += ["", "| pictures with no digit (never trained on), all marks \"not a digit\" | product | split |",
              "|---|---:|---:|"]
    lines += [f"| {kind} | {row['product']:.1%} | {row['split']:.1%} |" for kind, row in results["negatives"].items()]
    (HERE.parent / "results" / "touching_split.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
