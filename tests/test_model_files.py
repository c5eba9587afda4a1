"""mnist_digits/model_files.py: the model directory is written safely (SPEC section 5): a save
that fails, or is interrupted, at any point leaves the previous model as it was."""

import builtins
import io
import json
import os

import numpy as np
import pytest

import mnist_digit_recognition as mdr
from conftest import run_main, snapshot
from mnist_digits import model_files


def read_metadata(model_dir):
    return json.loads((model_dir / "metadata.json").read_text())


@pytest.fixture
def failing_write_of(monkeypatch):
    """failing_write_of(name, error): from now on, opening a file of that name for writing
    raises error (the disk fills up, or Ctrl-C comes, while the save writes it)."""
    real_open = io.open

    def arm(name, error):
        def open_or_fail(file, mode="r", *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and os.path.basename(file) == name \
                    and set(mode) & set("wax"):
                raise error
            return real_open(file, mode, *args, **kwargs)
        monkeypatch.setattr(io, "open", open_or_fail)
        monkeypatch.setattr(builtins, "open", open_or_fail)
    yield arm
    monkeypatch.undo()


@pytest.mark.parametrize("error, status, words", [
    (OSError(28, "No space left on device"), 1, "saving the trained model failed (No space left "
                                                "on device)"),
    (KeyboardInterrupt(), 130, "saving the trained model interrupted"),
], ids=["disk full", "Ctrl-C"])  # --resume after each: the same, so only after the first
def test_a_save_that_fails_keeps_the_old_model_and_the_training_for_resume(
        error, status, words, small_npz, tmp_path, capsys, monkeypatch, failing_write_of):
    """The disk fills up, or Ctrl-C comes, in the middle of the real save (model.keras,
    saved_model/ and model.tflite written, metadata.json not): one line, the previous model as
    it was, nothing half-written left, and --resume saves without training again."""
    monkeypatch.chdir(tmp_path)
    model_dir = tmp_path / "mnist_digit_recognition_model"
    flags = ["--data", small_npz, "--epochs", "2", "--train-size", "200", "--seed", "3",
             "--arch", "mlp"]
    assert run_main(capsys, *flags, "--epochs", "1")[0] == 0
    before = snapshot(model_dir)

    failing_write_of("metadata.json", error)
    code, out, err = run_main(capsys, *flags)
    assert code == status and len(err) == 1, err
    assert words in err[0] and "mnist_digit_recognition_model is as it was" in err[0]
    assert "run the same command with --resume to save it without training again" in err[0]
    assert snapshot(model_dir) == before, "the previous model was touched"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mnist_digit_recognition_model", "mnist_digit_recognition_model.partial"], \
        "a half-written model directory was left"

    if isinstance(error, KeyboardInterrupt):
        return
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, *flags, "--resume")
    assert code == 0, err
    assert not any(line.startswith("Epoch") for line in out), "it trained again"
    assert [row["epoch"] for row in read_metadata(model_dir)["history"]] == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mnist_digit_recognition_model", "mnist_digit_recognition_model.previous"]
    assert snapshot(tmp_path / "mnist_digit_recognition_model.previous") == before


def test_a_save_that_fails_between_its_renames_keeps_the_previous_model_and_nothing_else(
        tmp_path, monkeypatch):
    """The real save of a model over another, its second rename (the new folder into place,
    once the old one has moved aside) failing as a full or vanished disk makes it: the
    previous model is back in place, and nothing, neither the new folder nor the old one's
    hiding place, is left beside it. (test_a_swap_that_fails_at_any_rename_undoes_the_ones_
    before tries every rename of replace_directory alone.)"""
    model_dir = tmp_path / "model"
    model_files.save_model_dir(mdr.compile_model(mdr.build_model("mlp")), model_dir, {"test_accuracy": 0.5})
    before = snapshot(model_dir)
    calls = []

    def fail_on_the_second_call(real):
        def move(source, target, *args, **kwargs):
            calls.append((source, target))
            if len(calls) == 2:
                raise OSError(5, "Input/output error")
            return real(source, target, *args, **kwargs)
        return move

    monkeypatch.setattr(os, "rename", fail_on_the_second_call(os.rename))
    monkeypatch.setattr(os, "replace", fail_on_the_second_call(os.replace))
    with pytest.raises(OSError, match="Input/output error"):
        model_files.save_model_dir(mdr.compile_model(mdr.build_model("mlp")), model_dir,
                           {"test_accuracy": 0.6})
    monkeypatch.undo()
    assert len(calls) >= 2, "the save did not get to its second rename"
    assert snapshot(model_dir) == before, "the previous model is not in place"
    assert mdr.load_model(model_dir).count_params() == mdr.build_model("mlp").count_params()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "something was left beside it"


def test_failed_save_leaves_the_previous_model_intact(tmp_path):
    model_dir = tmp_path / "model"
    model = mdr.compile_model(mdr.build_model("mlp"))
    model_files.save_model_dir(model, model_dir, {"test_accuracy": 0.5})
    before = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}

    other = mdr.compile_model(mdr.build_model("cnn"))
    with pytest.raises(TypeError):  # metadata that cannot be written fails after the model files
        model_files.save_model_dir(other, model_dir, {"not json": object()})
    after = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "staging folder left behind"
    reloaded = mdr.load_model(model_dir)
    assert reloaded.count_params() == model.count_params()
    np.testing.assert_array_equal(reloaded.get_weights()[0], model.get_weights()[0])


def folders_to_swap(tmp_path):
    """A model directory, what stands at its .previous (a stray file), and a new model."""
    target, previous, new = tmp_path / "m", tmp_path / "m.previous", tmp_path / ".m.new"
    for folder, text in ((target, "old"), (new, "new")):
        folder.mkdir()
        (folder / "model.keras").write_text(text)
    previous.write_text("a stray file")
    return target, previous, new


def test_the_swap_keeps_the_replaced_model_whatever_stood_at_previous(tmp_path):
    target, previous, new = folders_to_swap(tmp_path)
    model_files.replace_directory(new, target)
    assert (target / "model.keras").read_text() == "new"
    assert (previous / "model.keras").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.previous"]


@pytest.mark.parametrize("failing", [1, 2, 3])
def test_a_swap_that_fails_at_any_rename_undoes_the_ones_before(tmp_path, monkeypatch, failing):
    target, previous, new = folders_to_swap(tmp_path)
    renames, rename = [], os.rename

    def rename_that_fails(source, destination):
        renames.append(source)
        if len(renames) == failing:
            raise OSError(28, "No space left on device")
        rename(source, destination)

    monkeypatch.setattr(os, "rename", rename_that_fails)
    with pytest.raises(OSError):
        model_files.replace_directory(new, target)
    monkeypatch.undo()
    assert (target / "model.keras").read_text() == "old"
    assert previous.read_text() == "a stray file"
    assert (new / "model.keras").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.new", "m", "m.previous"]
