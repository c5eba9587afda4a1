"""What the study's scripts share: where things are, the MNIST file, the product's picture
reader, the seven clean renderings of benchmarks/pictures.py (a digit as a file's bytes), and
a network's LiteRT export."""

import contextlib
import io
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = HERE / "cache"  # made by build_data.py and features.py; not for git
MODEL = ROOT / "mnist_digit_recognition_model" / "model.keras"
N_TRAIN = 54_000  # the shipped model's metadata.json: validation_split 0.1, the last 6,000 held out
sys.path.insert(0, str(ROOT))  # the repository: mnist_digits and benchmarks

from benchmarks.renderings import RENDERINGS  # noqa: E402
from mnist_digits import pictures  # noqa: E402  (the reader the product runs)

__all__ = ["CACHE", "CLEAN", "HERE", "MODEL", "N_TRAIN", "ROOT", "export_litert", "mnist",
           "picture_bytes", "pictures", "validation_digits"]

CLEAN = {name: render for name, (kind, render) in RENDERINGS.items() if kind == "clean"}


def mnist():
    """MNIST's arrays from $MNIST_DATA (default: ../shared/data/mnist beside the repository)."""
    folder = Path(os.environ.get("MNIST_DATA", ROOT.parent / "shared" / "data" / "mnist"))
    return np.load(folder / "mnist.npz")


def validation_digits():
    """(x, y): the 6,000 training digits the shipped model held out (those after N_TRAIN)."""
    arrays = mnist()
    return arrays["x_train"][N_TRAIN:], arrays["y_train"][N_TRAIN:]


def picture_bytes(name, digit, index):
    """The file's bytes of one digit in one clean rendering."""
    image, fmt, options = CLEAN[name](digit, index)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def export_litert(network, path):
    """The Keras network as a LiteRT file, without the converter's progress lines."""
    with contextlib.redirect_stdout(io.StringIO()):
        network.export(str(path), format="litert", verbose=False)
