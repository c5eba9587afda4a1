"""Shared fixtures: the real MNIST data (small slices of it) and a way to run the program."""

import contextlib
import gzip
import io
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from mnist_digits import classifier, mnist_files, model_files, serve

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "mnist_digit_recognition.py"
SHARED_DATA = ROOT.parent / "shared" / "data" / "mnist"
# The trained model the repository ships (SPEC section 5).
SHIPPED = ROOT / "mnist_digit_recognition_model"
# How far two float32 evaluations of one network may differ (Keras on oneDNN, LiteRT on
# XNNPACK; AVX2, AVX-512 or ARM kernels), from float32 arithmetic, not from one machine's
# result: each sums in an order of its own. float32 keeps 24 bits (unit roundoff 2**-24 =
# 6e-8); the rounding errors of the 4,713 products behind each output of the cnn (its weighted
# layers' fan-ins, 9 + 288 + 800 + 288 + 576 + 1,600 + 1,024 + 128) add like a random walk, to
# sqrt(4,713) x 6e-8 = 4.1e-6 of the logits' spread (under 25 here): 1e-4 on a logit. A
# probability moves by at most half its logits' change; a cross-entropy by at most twice it.
# README states the same bound.
LOGIT_TOLERANCE = 1e-4
PROBABILITY_TOLERANCE = LOGIT_TOLERANCE / 2
# The same for not_a_digit/reader/ (touching digits read whole): about 6,600 products behind a
# logit (fan-ins 9 + 288 + 576 + 864 + 672, its GRU's 192 at each of up to 21 steps, 128):
# sqrt(6,600) x 6e-8 = 4.9e-6 of the logits' spread (under 25 here), 1.2e-4; ten times that
# for the GRU's sigmoids and tanh, which each library approximates in its own way.
READER_LOGIT_TOLERANCE = 1e-3


def missing(what, detail=None):
    """A test cannot have what it needs: under CI (CI=true) that is a failure (with `detail`),
    elsewhere a skip that says what a user does about it. pytest's -ra summary shows the skips
    for want of one thing as one line (pytest_runtest_makereport)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what}{f' ({detail})' if detail else ''} (CI must run every test)",
                    pytrace=False)
    skip = pytest.skip.Exception(what)
    skip.missing = True
    raise skip


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A skip from missing() is placed at missing(), not at its test: pytest's summary then
    folds the skips of one reason into one line, where it gave each test function its own."""
    report = yield
    if report.skipped and call.excinfo is not None and \
            getattr(call.excinfo.value, "missing", False):
        report.longrepr = (__file__, missing.__code__.co_firstlineno, report.longrepr[2])
    return report


def cpu_model_name_and_flags():
    """The CPU's model name and feature flags as /proc/cpuinfo lists them."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, set()
    names = [line.split(":", 1)[1].strip() for line in text.splitlines()
             if line.startswith("model name")]
    flags = [line.split(":", 1)[1].split() for line in text.splitlines()
             if line.startswith("flags")]
    return (names[0] if names else None), set(flags[0] if flags else [])


def cpu_model_name():
    return cpu_model_name_and_flags()[0]


def expected_precisions():
    """The precisions training may pick when not told (README): bfloat16 mixed precision on
    CPUs with AVX-512 BF16 or AMX (oneDNN is faster at it there), float32 on other CPUs; on a
    GPU it depends on its compute capability."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return ("mixed_bfloat16", "mixed_float16", "float32")
    bf16 = {"avx512_bf16", "amx_bf16"} & cpu_model_name_and_flags()[1]
    return ("mixed_bfloat16",) if bf16 else ("float32",)


NEEDS_MNIST = "needs MNIST: set MNIST_DATA to a copy of it (a mnist.npz, or its four IDX files' folder)"


def mnist_data_dir():
    """The full MNIST copy: $MNIST_DATA, else ../shared/data/mnist beside the repository;
    None when neither exists."""
    for candidate in (os.environ.get("MNIST_DATA"), SHARED_DATA):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


def keras_mnist_arrays(lock_folder):
    """MNIST from Keras' own download and cache (~/.keras/datasets, or $KERAS_HOME), once at a
    time across the test processes of pytest-xdist."""
    import fcntl
    import socket

    import keras

    timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # Keras' download has none: no network fails, it does not hang
    try:
        with open(lock_folder / "mnist-download.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    finally:
        socket.setdefaulttimeout(timeout)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A folder holding the full MNIST both ways: mnist.npz and the four gzipped IDX files.
    From $MNIST_DATA or ../shared/data/mnist; where neither exists, from Keras' download."""
    found = mnist_data_dir()
    if found is not None and (found / "mnist.npz").is_file() and \
            all((found / f"{stem}.gz").is_file() for stem in IDX_NAMES.values()):
        return found
    if found is not None:  # one layout of it (or a .npz file): make the other
        arrays = mnist_files.read_mnist_arrays(found)
    else:
        try:
            arrays = keras_mnist_arrays(tmp_path_factory.getbasetemp().parent)
        except Exception as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            missing(NEEDS_MNIST, f"Keras' download failed: {reason}")
    folder = tmp_path_factory.mktemp("mnist")
    np.savez(folder / "mnist.npz", **arrays)
    return write_idx_folder(folder, arrays)


@pytest.fixture(scope="session")
def full_arrays(data_dir):
    """The four raw uint8 arrays of the real data set."""
    return mnist_files.read_mnist_arrays(data_dir / "mnist.npz")


@pytest.fixture(scope="session")
def test_digits(full_arrays):
    """The first 100 real test digits (uint8 (100, 28, 28), light on dark) and their labels."""
    return full_arrays["x_test"][:100], full_arrays["y_test"][:100]


@pytest.fixture(scope="session")
def shipped_model():
    """The model the repository ships (model.keras), loaded once per test process (read only:
    no test changes it)."""
    import mnist_digit_recognition as mdr

    if not (SHIPPED / "model.keras").is_file():
        missing(f"the repository's trained model is missing ({SHIPPED})")
    return mdr.load_model(SHIPPED)


@pytest.fixture(scope="session")
def shipped_classifier():
    """What predict and serve run on the shipped model (classifier.load_classifier: model.tflite
    on LiteRT where it is installed, without TensorFlow), made once per test process."""
    if not (SHIPPED / "model.keras").is_file():
        missing(f"the repository's trained model is missing ({SHIPPED})")
    return classifier.load_classifier(SHIPPED)


@pytest.fixture(scope="session")
def shipped_gate():
    """The shipped model's "not a digit" network as predict and serve run it
    (classifier.load_gate), made once per test process."""
    if not (SHIPPED / model_files.NOT_A_DIGIT_DIR / "settings.json").is_file():
        missing(f"the shipped model has no {model_files.NOT_A_DIGIT_DIR}/ ({SHIPPED})")
    return classifier.load_gate(SHIPPED)


@pytest.fixture(scope="session")
def shipped_reader():
    """The shipped model's reader of digits that touch (classifier.load_reader), made once per
    test process."""
    if not (SHIPPED / model_files.NOT_A_DIGIT_DIR / model_files.READER_DIR).is_dir():
        missing(f"the shipped model has no {model_files.NOT_A_DIGIT_DIR}/"
                f"{model_files.READER_DIR}/ ({SHIPPED})")
    return classifier.load_reader(SHIPPED)


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
    # compresslevel 1: the full set in a second or two where gzip's default takes ten
    with (gzip.open(path, "wb", compresslevel=1) if compress else open(path, "wb")) as f:
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


def snapshot(folder):
    """Every file under folder and its bytes: to show a saved model was not touched."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


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


# --- Pictures of MNIST digits as files, in the forms people save them ------------------------

def enlarge(digit, factor):
    return np.kron(digit, np.ones((factor, factor), np.uint8))


def colourise(digit):
    """Dark-blue ink on yellowish paper, as a photo of a note might look."""
    ink = digit[..., np.newaxis].astype(np.float32) / 255
    paper, pen = np.array([250, 240, 190]), np.array([20, 30, 120])
    return np.round(paper * (1 - ink) + pen * ink).astype(np.uint8)


# name: (file suffix, pixels from a uint8 MNIST digit (light on dark), the share of digits
# that must read as their arrays do: resizing and re-centring may change a borderline one)
PICTURE_FORMS = {
    "png 28x28": (".png", lambda d: d, 0.97),
    "png inverted": (".png", lambda d: 255 - d, 0.97),
    "jpeg 3x": (".jpg", lambda d: enlarge(d, 3), 0.95),
    "png 5x inverted": (".png", lambda d: 255 - enlarge(d, 5), 0.95),
    "png colour 2x": (".png", lambda d: colourise(enlarge(d, 2)), 0.95),
    "bmp": (".bmp", lambda d: d, 0.97),
    "gif inverted": (".gif", lambda d: 255 - d, 0.97),
}


def save_image(path, pixels):
    """Write uint8 pixels (H, W) or (H, W, 3) as the file type of the path's suffix (PNG,
    JPEG at quality 95, BMP or GIF), with Pillow."""
    from PIL import Image

    options = {"quality": 95} if Path(path).suffix == ".jpg" else {}
    Image.fromarray(pixels).save(path, **options)
    return path


# --- Broken data files: (name, build(folder, arrays) -> the --data path, words of the error) ---

def npz_file(make, name="mnist.npz"):
    """A .npz of the arrays make(arrays) returns."""
    def build(folder, arrays):
        np.savez(folder / name, **make(arrays))
        return folder / name
    return build


def raw_file(name, content):
    def build(folder, arrays):
        (folder / name).write_bytes(content(arrays) if callable(content) else content)
        return folder / name
    return build


def broken_idx(breaker):
    """An IDX folder of the arrays, then broken by breaker(folder, arrays)."""
    def build(folder, arrays):
        path = write_idx_folder(folder / "idx", arrays)
        breaker(path, arrays)
        return path
    return build


def idx_gz(stem, raw=None, array=None, gzipped=True):
    """Replace one IDX file with raw bytes (gzipped or as they are) or another array."""
    def breaker(folder, arrays):
        target = folder / f"{stem}.gz"
        if array is not None:
            write_idx(target, array(arrays))
        elif gzipped:
            with gzip.open(target, "wb") as f:
                f.write(raw(arrays) if callable(raw) else raw)
        else:
            target.write_bytes(raw(arrays) if callable(raw) else raw)
    return breaker


def idx_bytes(array):
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + \
        struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def npz_bytes(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


NOT_MNIST = "expected a Keras-layout mnist.npz or a folder with the four IDX files"
CORRUPT_DATA = [
    ("empty npz", raw_file("empty.npz", b""), ["empty.npz", "not a readable .npz", NOT_MNIST]),
    ("text file as npz", raw_file("notes.npz", b"hello"),
     ["notes.npz", "not a readable .npz", NOT_MNIST]),
    ("README as data", raw_file("README.md", b"# a project\n"),
     ["README.md", "not a readable .npz file, so not MNIST", NOT_MNIST]),
    ("truncated npz", raw_file("cut.npz", lambda a: npz_bytes(a)[:5000]),
     ["cut.npz", "not a readable .npz"]),
    ("npz without test labels",
     npz_file(lambda a: {k: v for k, v in a.items() if k != "y_test"}),
     ["mnist.npz lacks the array(s) y_test", "(x_train, y_train, x_test, y_test)"]),
    ("float images in npz", npz_file(lambda a: dict(a, x_train=a["x_train"] / 255.0)),
     ["train images have shape (600, 28, 28) and type float64", "expected (N, 28, 28) uint8"]),
    ("IDX folder missing a file",
     broken_idx(lambda f, a: (f / "t10k-labels-idx1-ubyte.gz").unlink()),
     ["has no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz", NOT_MNIST]),
    ("empty IDX file", broken_idx(idx_gz("t10k-images-idx3-ubyte", raw=b"")),
     ["t10k-images-idx3-ubyte.gz is not an MNIST IDX file", "magic number empty"]),
    ("IDX not gzip", broken_idx(idx_gz("t10k-images-idx3-ubyte", raw=b"plain", gzipped=False)),
     ["t10k-images-idx3-ubyte.gz cannot be read", "truncated or not gzip"]),
    ("IDX truncated gzip", broken_idx(idx_gz(
        "train-images-idx3-ubyte", raw=lambda a: gzip.compress(idx_bytes(a["x_train"]))[:20000],
        gzipped=False)), ["train-images-idx3-ubyte.gz cannot be read", "truncated or not gzip"]),
    ("IDX wrong magic number", broken_idx(idx_gz("train-images-idx3-ubyte",
                                                 raw=b"\0\0\x09\x03" + b"\0" * 16)),
     ["train-images-idx3-ubyte.gz is not an MNIST IDX file", "wrong magic number 00000903"]),
    ("IDX truncated", broken_idx(idx_gz("train-labels-idx1-ubyte",
                                        raw=b"\0\0\x08\x01" + (600).to_bytes(4, "big") + b"\0" * 10)),
     ["train-labels-idx1-ubyte.gz is truncated: 18 bytes where its header (600,) promises 608"]),
    ("IDX images 27x27", broken_idx(idx_gz("train-images-idx3-ubyte",
                                           array=lambda a: a["x_train"][:, :27, :27])),
     ["train images have shape (600, 27, 27)", "expected (N, 28, 28) uint8"]),
    ("IDX labels out of range", broken_idx(idx_gz("train-labels-idx1-ubyte",
                                                  array=lambda a: a["y_train"] + 10)),
     ["train labels range from 10 to 19; expected digits 0-9"]),
    ("IDX counts differ", broken_idx(idx_gz("train-labels-idx1-ubyte",
                                            array=lambda a: a["y_train"][:-1])),
     ["600 train images but 599 labels"]),
]


# --- A server in this process -------------------------------------------------------------

HEALTH = {"status": "ok", "model": "the shipped one"}


@contextlib.contextmanager
def running_server(model, gate=None):
    """make_server on 127.0.0.1 and a free port, serving from a daemon thread. On leaving, it
    is gone as a stopped process is: no longer listening, and no connection it accepted left
    open (a browser opens connections ahead of need, and would send its next request on one)."""
    server = serve.make_server(classifier.picture_answerer(model, gate), "127.0.0.1", 0,
                               HEALTH)
    accepted = []
    get_request = server.get_request

    def get_request_kept():
        connection, address = get_request()
        accepted.append(connection)
        return connection, address

    server.get_request = get_request_kept
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        for connection in accepted:
            with contextlib.suppress(OSError):  # most are closed already
                connection.shutdown(socket.SHUT_RDWR)
