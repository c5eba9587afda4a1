"""Shared fixtures: the real MNIST data (small slices of it) and a way to run the program."""

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "mnist_digit_recognition.py"
SHARED_DATA = ROOT.parent / "shared" / "data" / "mnist"


def mnist_data_dir():
    """The full MNIST copy: $MNIST_DATA, else ../shared/data/mnist beside the repository."""
    candidate = Path(os.environ.get("MNIST_DATA") or SHARED_DATA)
    return candidate if candidate.exists() else None


@pytest.fixture(scope="session")
def data_dir():
    found = mnist_data_dir()
    if found is None:
        pytest.skip(f"needs the MNIST data: set MNIST_DATA or put it at {SHARED_DATA}")
    return found


@pytest.fixture(scope="session")
def full_arrays(data_dir):
    """The four raw uint8 arrays of the real data set."""
    import mnist_digit_recognition as mdr

    return mdr.read_mnist_arrays(data_dir)


def slice_arrays(arrays, n_train, n_test):
    return {"x_train": arrays["x_train"][:n_train], "y_train": arrays["y_train"][:n_train],
            "x_test": arrays["x_test"][:n_test], "y_test": arrays["y_test"][:n_test]}


@pytest.fixture(scope="session")
def small_arrays(full_arrays):
    """600 training and 300 test images of the real data."""
    return slice_arrays(full_arrays, 600, 300)


@pytest.fixture(scope="session")
def small_npz(small_arrays, tmp_path_factory):
    """A Keras-layout mnist.npz holding a small slice of the real data (fast to load)."""
    path = tmp_path_factory.mktemp("data") / "mnist.npz"
    np.savez(path, **small_arrays)
    return path


def write_idx(path, array, compress=True):
    """Write an array in the IDX format MNIST is distributed in."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                         *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(data)


IDX_NAMES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def write_idx_folder(folder, arrays, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    for name, stem in IDX_NAMES.items():
        write_idx(folder / (stem + (".gz" if compress else "")), arrays[name], compress)
    return folder


def run_program(*args, cwd=None, env=None, timeout=600):
    """Run the program as a user would: a separate Python process."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def run_python(code, cwd=None, timeout=300):
    """Run a snippet in a fresh interpreter that has not imported our script."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def our_stderr_lines(stderr):
    """stderr without the lines TensorFlow's C++ runtime prints at start-up before its logging
    is set up (they ignore TF_CPP_MIN_LOG_LEVEL and are not ours to silence)."""
    noise = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "W0000 ",
             "E0000 ", "To enable the following instructions")
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(noise)]


def run_main(capsys, *args):
    """Run the command line in this process (no TensorFlow start-up): (exit status, stdout
    lines, stderr lines)."""
    import mnist_digit_recognition as mdr

    capsys.readouterr()
    status = mdr.main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err.splitlines()


def assert_one_line_error(result, *words, code=2):
    """The program failed as SPEC section 7 asks: exit status `code`, exactly one line of its
    own on stderr, holding each of `words`, and no traceback. Returns that line."""
    lines = our_stderr_lines(result.stderr)
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]
