"""Loading MNIST from both layouts, and refusing broken files with one clear message."""

import gzip

import numpy as np
import pytest

import mnist_digit_recognition as mdr
from conftest import IDX_NAMES, write_idx, write_idx_folder


def test_npz_and_idx_layouts_give_the_same_arrays(data_dir, tmp_path, small_arrays):
    from_npz = mdr.read_mnist_arrays(data_dir / "mnist.npz")
    from_idx = mdr.read_mnist_arrays(data_dir)  # the folder of gzipped IDX files
    for name in IDX_NAMES:
        np.testing.assert_array_equal(from_npz[name], from_idx[name])
    assert from_npz["x_train"].shape == (60000, 28, 28)
    assert from_npz["x_test"].shape == (10000, 28, 28)
    assert mdr.mnist_checksum(from_npz) == mdr.mnist_checksum(from_idx)

    plain = write_idx_folder(tmp_path / "plain", small_arrays, compress=False)
    from_plain = mdr.read_mnist_arrays(plain)
    for name in IDX_NAMES:
        np.testing.assert_array_equal(from_plain[name], small_arrays[name])


def test_a_folder_holding_only_mnist_npz_is_read_as_that_file(small_npz, small_arrays, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "mnist.npz").write_bytes(small_npz.read_bytes())
    arrays = mdr.read_mnist_arrays(folder)
    assert mdr.mnist_checksum(arrays) == mdr.mnist_checksum(small_arrays)


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
    assert mdr.mnist_checksum(small_arrays) != mdr.mnist_checksum(changed)


def idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def corrupt_cases(arrays):
    """(name, how to break an IDX folder, words the message must contain)."""
    def remove(stem):
        return lambda folder: (folder / f"{stem}.gz").unlink()

    def overwrite(stem, data, compress=True):
        def apply(folder):
            (folder / f"{stem}.gz").unlink()
            if compress:
                with gzip.open(folder / f"{stem}.gz", "wb") as f:
                    f.write(data)
            else:
                (folder / f"{stem}.gz").write_bytes(data)
        return apply

    def rewrite(stem, array):
        return lambda folder: write_idx(folder / f"{stem}.gz", array)

    images, labels = arrays["x_train"], arrays["y_train"]
    return [
        ("missing labels file", remove("train-labels-idx1-ubyte"), "train-labels-idx1-ubyte"),
        ("empty file", overwrite("t10k-images-idx3-ubyte", b""), "magic number"),
        ("not gzip", overwrite("t10k-images-idx3-ubyte", b"hello", compress=False), "cannot be read"),
        ("truncated gzip", overwrite("train-images-idx3-ubyte",
                                     gzip.compress(idx_bytes(images))[:20000], compress=False),
         "cannot be read"),
        ("wrong magic", overwrite("train-images-idx3-ubyte", b"\x00\x00\x09\x03" + b"\0" * 16),
         "magic number"),
        ("truncated data", overwrite("train-labels-idx1-ubyte",
                                     b"\0\0\x08\x01" + (600).to_bytes(4, "big") + b"\0" * 10),
         "truncated"),
        ("wrong image size", rewrite("train-images-idx3-ubyte", images[:, :27, :27]), "(N, 28, 28)"),
        ("labels out of range", rewrite("train-labels-idx1-ubyte", labels + 10), "0-9"),
        ("counts differ", rewrite("train-labels-idx1-ubyte", labels[:-1]), "labels"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_broken_idx_folder_is_refused_with_a_clear_message(case, tmp_path, small_arrays):
    name, breaker, expected = corrupt_cases(small_arrays)[case]
    folder = write_idx_folder(tmp_path / "idx", small_arrays)
    breaker(folder)
    with pytest.raises(mdr.UserError) as error:
        mdr.read_mnist_arrays(folder)
    message = str(error.value)
    assert expected in message, (name, message)
    assert "\n" not in message


def test_broken_npz_is_refused(tmp_path, small_arrays):
    not_zip = tmp_path / "garbage.npz"
    not_zip.write_bytes(b"this is not an npz file")
    with pytest.raises(mdr.UserError, match="not a readable .npz"):
        mdr.read_mnist_arrays(not_zip)

    missing_key = tmp_path / "missing.npz"
    np.savez(missing_key, **{k: v for k, v in small_arrays.items() if k != "y_test"})
    with pytest.raises(mdr.UserError, match="lacks the array"):
        mdr.read_mnist_arrays(missing_key)

    wrong_dtype = tmp_path / "float.npz"
    np.savez(wrong_dtype, **dict(small_arrays, x_train=small_arrays["x_train"] / 255.0))
    with pytest.raises(mdr.UserError, match="uint8"):
        mdr.read_mnist_arrays(wrong_dtype)

    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, **small_arrays)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    with pytest.raises(mdr.UserError, match="not a readable .npz"):
        mdr.read_mnist_arrays(truncated)


def test_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(mdr.UsageError, match="--data"):
        mdr.read_mnist_arrays(tmp_path / "nowhere")
