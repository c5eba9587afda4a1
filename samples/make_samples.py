"""Makes the sample pictures README uses, from real MNIST test digits.

    python samples/make_samples.py path/to/mnist.npz     # default: $MNIST_DATA/mnist.npz

seven.png     the first 7 of the test set, as MNIST stores it: 28x28, light ink on black
three.jpg     the first 3 of the test set, dark ink on white, enlarged to 280x280, a JPEG
47.png        the first 4 and the first 7 of the test set side by side, dark on white, 280x140
x.png         an X drawn as two pen strokes, dark on white, 200x200: not a digit
"""

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def first(x, y, digit):
    return x[np.flatnonzero(y == digit)[0]]


def main():
    default = Path(os.environ.get("MNIST_DATA", ".")) / "mnist.npz"
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    with np.load(path) as data:
        x, y = data["x_test"], data["y_test"]
    seven, three, four = first(x, y, 7), first(x, y, 3), first(x, y, 4)
    Image.fromarray(seven).save(HERE / "seven.png")
    Image.fromarray(255 - three).resize((280, 280)).save(HERE / "three.jpg", quality=90)
    Image.fromarray(255 - np.hstack([four, seven])).resize((280, 140)).save(HERE / "47.png")
    x = Image.new("L", (200, 200), 255)
    for stroke in [(50, 40, 150, 160), (150, 40, 50, 160)]:
        ImageDraw.Draw(x).line(stroke, fill=0, width=12)
    x.save(HERE / "x.png")


if __name__ == "__main__":
    main()
