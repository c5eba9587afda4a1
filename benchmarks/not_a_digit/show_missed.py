"""The held-out negatives a decider lets through as digits, with the network's answer:
a sheet per kind, to see whether they are digit-like (then the negatives need cleaning) or not.

    python show_missed.py [--decider "MLP 32"] [--rate 0.0015] [--count 48]  -> sheets/missed_<kind>.png
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluate  # noqa: E402
from common import CACHE, HERE  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--decider", default="MLP 32")
    parser.add_argument("--kinds", nargs="+", default=list(evaluate.TRAIN_KINDS))
    parser.add_argument("--rate", type=float, default=0.0015)
    parser.add_argument("--count", type=int, default=48)
    args = parser.parse_args()
    _, scores = evaluate.load_fitted(evaluate.fitted_path(args.decider, args.kinds))
    threshold = np.quantile(scores["validation"], 1 - args.rate)
    for kind in evaluate.HELD_OUT:
        name = f"neg_{kind}_s2"
        marks = np.load(CACHE / f"{name}.npz")["marks"]
        answers = np.load(CACHE / f"feat_{name}.npz")["probabilities"]
        missed = np.flatnonzero(scores[name] <= threshold)[:args.count]
        sheet = Image.new("L", (12 * 56, (len(missed) + 11) // 12 * 70), 128)
        draw = ImageDraw.Draw(sheet)
        for n, i in enumerate(missed):
            x, y = n % 12 * 56, n // 12 * 70
            sheet.paste(Image.fromarray((255 * marks[i]).astype(np.uint8)).resize((56, 56)), (x, y))
            draw.text((x + 4, y + 57), f"{answers[i].argmax()} {answers[i].max():.0%}", fill=255)
        sheet.save(HERE / "sheets" / f"missed_{kind}.png")
        print(f"{kind}: {len(np.flatnonzero(scores[name] <= threshold))} of {len(marks)} let through")


if __name__ == "__main__":
    main()
