"""MNIST's files: a Keras-layout .npz, a folder of the four IDX files (gzipped or not), or
Keras' own download; each checked, with one clear line for a file that is not MNIST."""

import contextlib
import gzip
import hashlib
import io
import math
import os
import socket
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from .errors import UsageError, UserError, first_line
from .lazy import keras

IMAGE_SHAPE = (28, 28, 1)


NUM_CLASSES = 10


IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


NOT_MNIST = "expected a Keras-layout mnist.npz or a folder with the four IDX files"


def read_mnist_arrays(path=None):
    """Return the raw uint8 arrays {x_train, y_train, x_test, y_test}, checked.

    `path` is a Keras-layout .npz, or a folder holding the four IDX files (gzipped or not) or
    mnist.npz; None means Keras' own download and cache.
    """
    check_data_path(path)
    if path is None:
        arrays = download_mnist()
    elif Path(path).is_file():
        arrays = read_npz(Path(path))
    elif (Path(path) / "mnist.npz").is_file() and not any(Path(path).glob("*-idx?-ubyte*")):
        arrays = read_npz(Path(path) / "mnist.npz")  # a folder holding Keras' own file
    else:
        arrays = read_idx_folder(Path(path))
    check_mnist_arrays(arrays, source=path or "the Keras download")
    return arrays


def check_data_path(path):
    try:
        found = path is None or Path(path).exists()
    except OSError as error:  # a name too long, a folder we may not enter
        raise UsageError(f"--data {path}: {error.strerror}") from None
    if not found:
        named_by = "MNIST_DATA" if str(path) == os.environ.get("MNIST_DATA") else "--data"
        raise UsageError(f"MNIST data not found at {path} ({named_by}): pass --data PATH to a "
                         "mnist.npz or to a folder with the four IDX files")


def download_mnist():
    # Keras downloads without a timeout; a machine without network should fail, not hang.
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        with contextlib.redirect_stdout(ShownOnceMoving(sys.stdout)):
            (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as error:  # urllib, SSL and hash errors all mean the same to the user
        reason = first_line(error)
        raise UserError(f"could not download MNIST ({reason}): without network, pass --data "
                        "PATH (a mnist.npz or a folder with the four IDX files) "
                        "or set MNIST_DATA") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


class ShownOnceMoving(io.TextIOBase):
    """stdout for Keras' download: its first line ("Downloading data from ...") is held back
    until the progress bar follows it, so that without network only our error is printed."""

    def __init__(self, stdout):
        self.stdout, self.held = stdout, ""

    def write(self, text):
        if self.held is not None:
            self.held += text
            if "\n" not in self.held.rstrip("\n"):
                return len(text)
            text, self.held = self.held, None
        return self.stdout.write(text)

    def flush(self):
        self.stdout.flush()

    def isatty(self):
        return self.stdout.isatty()


def read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = sorted(set(IDX_FILES) - set(npz.files))
            if not missing:
                return {name: npz[name] for name in IDX_FILES}
    except Exception:  # zip, zlib and numpy format errors (numpy's pickle advice is no help)
        raise UserError(f"{path} is not a readable .npz file, so not MNIST: {NOT_MNIST}") from None
    raise UserError(f"{path} lacks the array(s) {', '.join(missing)}: {NOT_MNIST} "
                    "(x_train, y_train, x_test, y_test)")


def read_idx_folder(folder):
    arrays = {}
    for name, stem in IDX_FILES.items():
        found = next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
        if found is None:
            raise UserError(f"{folder} has no {stem} or {stem}.gz: {NOT_MNIST} "
                            f"({', '.join(IDX_FILES.values())})")
        arrays[name] = read_idx(found)
    return arrays


def read_idx(path):
    """Parse one IDX file (http://yann.lecun.com/exdb/mnist/ format), gzipped or not."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"{path} cannot be read ({error}): is it truncated or not gzip?") from None
    if len(data) < 4 or data[:3] != b"\0\0\x08" or data[3] not in (1, 3):
        raise UserError(f"{path} is not an MNIST IDX file (wrong magic number "
                        f"{data[:4].hex() or 'empty'}; expected 00000801 or 00000803)")
    header = 4 + 4 * data[3]
    if len(data) < header:
        raise UserError(f"{path} is truncated (its header is incomplete)")
    shape = struct.unpack(f">{data[3]}I", data[4:header])
    expected = header + math.prod(shape)
    if len(data) != expected:
        problem = "is truncated" if len(data) < expected else "has extra bytes"
        raise UserError(f"{path} {problem}: {len(data):,} bytes where its header "
                        f"{shape} promises {expected:,}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def check_mnist_arrays(arrays, source):
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
            raise UserError(f"{source}: {split} images have shape {x.shape} and type {x.dtype}; "
                            "expected (N, 28, 28) uint8")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"{source}: {split} labels have shape {y.shape} and type {y.dtype}; "
                            "expected (N,) integers")
        if len(x) != len(y) or len(x) == 0:
            raise UserError(f"{source}: {len(x):,} {split} images but {len(y):,} labels")
        if y.min() < 0 or y.max() > 9:
            raise UserError(f"{source}: {split} labels range from {y.min()} to {y.max()}; "
                            "expected digits 0-9")


def mnist_checksum(arrays):
    """SHA-256 of the four arrays' bytes: the same for the npz and IDX layouts of one data set."""
    digest = hashlib.sha256()
    for name in IDX_FILES:
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def normalize_images(images):
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1], the network's input."""
    return (np.asarray(images, dtype=np.float32) / 255.0)[..., np.newaxis]
