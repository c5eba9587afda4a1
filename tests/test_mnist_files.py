"""mnist_digits/mnist_files.py: loading MNIST from both layouts, and refusing broken files with
one clear message."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mnist_digit_recognition as mdr
from mnist_digits import errors, mnist_files
import conftest
from conftest import CORRUPT_DATA, IDX_NAMES, ROOT, write_idx_folder


def test_npz_and_idx_layouts_give_the_same_arrays(data_dir, tmp_path, small_arrays):
    from_npz = mnist_files.read_mnist_arrays(data_dir / "mnist.npz")
    from_idx = mnist_files.read_mnist_arrays(data_dir)  # the folder of gzipped IDX files
    for name in IDX_NAMES:
        np.testing.assert_array_equal(from_npz[name], from_idx[name])
    assert from_npz["x_train"].shape == (60000, 28, 28)
    assert from_npz["x_test"].shape == (10000, 28, 28)
    assert mnist_files.mnist_checksum(from_npz) == mnist_files.mnist_checksum(from_idx)

    plain = write_idx_folder(tmp_path / "plain", small_arrays, compress=False)
    from_plain = mnist_files.read_mnist_arrays(plain)
    for name in IDX_NAMES:
        np.testing.assert_array_equal(from_plain[name], small_arrays[name])


def test_a_folder_holding_only_mnist_npz_is_read_as_that_file(small_npz, small_arrays, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "mnist.npz").write_bytes(small_npz.read_bytes())
    arrays = mnist_files.read_mnist_arrays(folder)
    assert mnist_files.mnist_checksum(arrays) == mnist_files.mnist_checksum(small_arrays)


def test_load_mnist_normalises_and_adds_the_channel_axis(small_npz, small_arrays):
    (x_train, y_train), (x_test, y_test) = mdr.load_mnist(small_npz)
    assert x_train.shape == (600, 28, 28, 1) and x_test.shape == (300, 28, 28, 1)
    assert x_train.dtype == np.float32
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    np.testing.assert_array_equal(x_train[..., 0] * 255, small_arrays["x_train"])
    np.testing.assert_array_equal(y_test, small_arrays["y_test"])


def test_checksum_tells_data_sets_apart(small_arrays):
    changed = dict(small_arrays, y_test=small_arrays["y_test"].copy())
    changed["y_test"][0] = (changed["y_test"][0] + 1) % 10
    assert mnist_files.mnist_checksum(small_arrays) != mnist_files.mnist_checksum(changed)


@pytest.mark.parametrize("case", CORRUPT_DATA, ids=[case[0] for case in CORRUPT_DATA])
def test_broken_data_is_refused_with_one_line_saying_what_is_wrong(case, tmp_path, small_arrays):
    """The function's refusal; tests/test_bad_input.py runs the same cases on the command line."""
    name, build, words = case
    with pytest.raises(errors.UserError) as error:
        mnist_files.read_mnist_arrays(build(tmp_path, small_arrays))
    assert not isinstance(error.value, errors.UsageError), "the path was good, its content is not"
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (name, message)


def test_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(errors.UsageError, match="--data"):
        mnist_files.read_mnist_arrays(tmp_path / "nowhere")


NEEDS_DATA = """
def test_the_full_set_is_there(data_dir, full_arrays):
    assert full_arrays["x_train"].shape == (60000, 28, 28)


def test_the_test_set_is_there(full_arrays):
    assert full_arrays["x_test"].shape == (10000, 28, 28)
"""


def test_without_data_the_suite_tries_keras_download_skips_in_one_line_and_under_ci_fails(
        tmp_path):
    """Neither $MNIST_DATA nor ../shared/data/mnist, and no network: the tests that need MNIST
    ask Keras' download for it, then skip saying what to do, in one line of the summary for all
    of them, or under CI=true fail (never a silent skip in CI). Run on a copy of conftest.py
    whose ../shared does not exist."""
    tests = tmp_path / "repository" / "tests"
    tests.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "conftest.py", tests)
    (tests / "test_needs_data.py").write_text(NEEDS_DATA)
    env = {key: value for key, value in os.environ.items()
           if key not in ("MNIST_DATA", "CI", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS")}
    env.update(PYTHONPATH=str(ROOT), KERAS_HOME=str(tmp_path / "keras"), TF_CPP_MIN_LOG_LEVEL="3",
               https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9",
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    runs = {ci: subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rsE",
         str(tests)], cwd=tests.parent, env={**env, **({"CI": "true"} if ci else {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for ci in (False, True)}
    outputs = {ci: run.communicate(timeout=300)[0] for ci, run in runs.items()}
    assert runs[False].returncode == 0 and "2 skipped" in outputs[False], outputs[False]
    skipped = [line for line in outputs[False].splitlines() if line.startswith("SKIPPED")]
    assert skipped == [f"SKIPPED [2] tests/conftest.py:{conftest.missing.__code__.co_firstlineno}:"
                       f" {conftest.NEEDS_MNIST}"], outputs[False]
    assert runs[True].returncode == 1 and "2 errors" in outputs[True], outputs[True]
    assert f"{conftest.NEEDS_MNIST} (Keras' download failed: " in outputs[True]
    assert "tf-keras-datasets/mnist.npz" in outputs[True]  # Keras' own download was tried
    assert "(CI must run every test)" in outputs[True]
