"""A contact sheet of each kind: the pictures (top rows) and the marks find_digits makes of them.

    python show_negatives.py [--count 24] [--seed 0]   -> sheets/<kind>.png
"""
import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import negatives  # noqa: E402
from common import mnist, pictures  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", nargs="+", default=list(negatives.KINDS))
    args = parser.parse_args()
    data = mnist()
    digits, labels = data["x_test"], data["y_test"]
    out = HERE / "sheets"
    out.mkdir(exist_ok=True)
    for kind in args.kinds:
        pics = negatives.negative_pictures(kind, args.count, args.seed, digits, labels)
        tiles, marks = [], []
        for data_bytes, fmt, what in pics:
            image = Image.open(io.BytesIO(data_bytes)).convert("L")
            image.thumbnail((96, 96))
            tile = Image.new("L", (100, 100), 128)
            tile.paste(image, (2, 2))
            tiles.append(tile)
            try:
                found, _ = pictures.find_digits(pictures.decode_picture(data_bytes))
                marks += list(found)
            except ValueError:
                pass
        cols = 12
        rows = -(-len(tiles) // cols)
        mark_rows = -(-len(marks) // (cols * 3))
        sheet = Image.new("L", (cols * 100, rows * 100 + mark_rows * 34), 255)
        for i, tile in enumerate(tiles):
            sheet.paste(tile, ((i % cols) * 100, (i // cols) * 100))
        for i, m in enumerate(marks):
            sheet.paste(Image.fromarray(np.uint8(255 * m)).resize((32, 32)),
                        ((i % (cols * 3)) * 33 + 2, rows * 100 + (i // (cols * 3)) * 34))
        sheet.save(out / f"{kind}.png")
        print(kind, len(pics), "pictures", len(marks), "marks:",
              ", ".join(w for _, _, w in pics[:24]))


if __name__ == "__main__":
    main()
