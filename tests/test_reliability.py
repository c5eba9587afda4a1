"""Interruption and resume, divergence, reproducibility and safe saving (SPEC section 7)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mnist_digit_recognition as mdr
from conftest import SCRIPT, our_stderr_lines, run_main


def read_metadata(model_dir):
    return json.loads((model_dir / "metadata.json").read_text())


def start_and_signal_in_epoch(flags, epoch, cwd, how=signal.SIGINT):
    """Run the program; once it prints "Epoch N/", send it the signal: (exit status, stderr)."""
    # A process started with Ctrl-C ignored (under nohup, in a background job) passes that on
    # to its children, and Python then leaves it ignored: the child must start with it handled.
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), *map(str, flags)], cwd=cwd, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    finally:
        signal.signal(signal.SIGINT, ignored)
    for line in process.stdout:
        if line.startswith(f"Epoch {epoch}/"):
            break
    time.sleep(0.05)
    process.send_signal(how)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_keeps_the_old_model_and_resumes(how, small_npz, tmp_path, capsys,
                                                         monkeypatch):
    """The run to interrupt is a real process (signals); the others run in this one."""
    monkeypatch.chdir(tmp_path)
    # Batches of 1 make an epoch 540 short steps of the mlp (half a second or more), so the
    # signal sent a twentieth of a second into epoch 2 lands in epoch 2 (with batches of 4 of
    # the cnn and a second's wait, a machine with bfloat16 had finished the run).
    flags = ["--data", small_npz, "--epochs", "2", "--seed", "1", "--batch-size", "1",
             "--arch", "mlp", "--no-augmentation"]
    assert run_main(capsys, *flags, "--epochs", "1", "--train-size", "200")[0] == 0
    model_dir = tmp_path / "mnist_digit_recognition_model"
    old = (model_dir / "model.keras").read_bytes()

    code, stderr = start_and_signal_in_epoch(flags, 2, tmp_path, how)
    assert code == 130, stderr
    lines = our_stderr_lines(stderr)
    assert len(lines) == 1 and "interrupted after 1 finished epoch" in lines[0], stderr
    assert "--resume" in lines[0] and "Traceback" not in stderr
    assert (model_dir / "model.keras").read_bytes() == old, "the saved model was touched"
    if how == signal.SIGTERM:
        return  # resuming is the same after either signal: once is enough

    code, _, err = run_main(capsys, *flags)  # without --resume: refuses to throw work away
    assert code == 2 and "--resume" in err[0]

    code, out, err = run_main(capsys, *flags, "--resume")
    assert code == 0, err
    assert "Epoch 2/2" in out and "Epoch 1/2" not in out
    metadata = read_metadata(model_dir)
    assert [row["epoch"] for row in metadata["history"]] == [1, 2]
    assert not (tmp_path / "mnist_digit_recognition_model.partial").exists()


def test_interrupted_in_the_first_epoch_offers_nothing_to_resume(small_npz, tmp_path):
    code, stderr = start_and_signal_in_epoch(
        ["--data", small_npz, "--epochs", "2", "--batch-size", "1", "--arch", "mlp"], 1, tmp_path)
    assert code == 130
    lines = our_stderr_lines(stderr)
    assert len(lines) == 1 and "first epoch" in lines[0] and "nothing to resume" in lines[0]
    assert list(tmp_path.iterdir()) == [], "nothing to resume, so nothing is kept"


def test_train_leaves_the_sigterm_handler_as_it_found_it(small_npz):
    (x_train, y_train), _ = mdr.load_mnist(small_npz)
    before = signal.getsignal(signal.SIGTERM)
    recipe = mdr.Recipe(arch="mlp", epochs=1, augment=False)
    mdr.train(mdr.compile_model(mdr.build_model_for(recipe)), x_train[:100], y_train[:100],
              recipe, verbose=0)
    assert signal.getsignal(signal.SIGTERM) is before


def test_resume_needs_the_same_command(small_npz, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "mnist_digit_recognition_model.partial"
    code, _, err = run_main(capsys, "--data", small_npz, "--resume")
    assert code == 2 and len(err) == 1 and "no interrupted run" in err[0]
    work.mkdir()
    (work / "settings.json").write_text(json.dumps({"epochs": 4}))
    code, _, err = run_main(capsys, "--data", small_npz, "--resume")
    assert code == 2 and len(err) == 1 and "--epochs 4 (now 15)" in err[0]


# The largest rate the flag takes. The loss explodes in the first steps; in about one run of six
# it stays finite (1e31 and falling), which must count as diverged too (14 runs of 14 did).
DIVERGING = ["--no-batchnorm", "--arch", "classic-cnn", "--optimizer", "sgd",
             "--learning-rate", "999999"]


def test_diverging_run_stops_and_keeps_the_saved_model(small_npz, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_dir = tmp_path / "mnist_digit_recognition_model"
    assert run_main(capsys, "--data", small_npz, "--epochs", "1", "--train-size", "200",
                    "--arch", "mlp")[0] == 0
    before = (model_dir / "metadata.json").read_text()
    code, out, err = run_main(capsys, *DIVERGING, "--data", small_npz, "--epochs", "3")
    assert code == 1 and len(err) == 1
    assert "diverged" in err[0] and "--learning-rate" in err[0]
    assert "the saved model was not changed" in err[0]
    assert "Epoch 2/3" not in out, "training should stop in the first epoch"
    assert (model_dir / "metadata.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist_digit_recognition_model"]


def test_diverging_first_run_says_nothing_was_saved(small_npz, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, *DIVERGING, "--data", small_npz, "--epochs", "2",
                            "--train-size", "200")
    assert code == 1 and len(err) == 1
    assert "diverged" in err[0] and "nothing was saved" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_same_seed_gives_the_same_metrics(small_npz, tmp_path, capsys):
    runs = []
    for name in ("a", "b"):
        code, _, err = run_main(capsys, "--data", small_npz, "--epochs", "2", "--train-size",
                                "200", "--seed", "11", "--model-dir", tmp_path / name)
        assert code == 0, err
        runs.append(read_metadata(tmp_path / name))
    a, b = runs
    assert a["test_loss"] == b["test_loss"] and a["test_accuracy"] == b["test_accuracy"]
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    assert [r["val_loss"] for r in a["history"]] == [r["val_loss"] for r in b["history"]]


def test_a_save_that_fails_keeps_the_training_for_resume(small_npz, tmp_path, capsys,
                                                        monkeypatch):
    """A full disk at the end of a run: one line, and --resume saves without training again."""
    monkeypatch.chdir(tmp_path)
    flags = ["--data", small_npz, "--epochs", "2", "--train-size", "200", "--seed", "3"]
    save = mdr.save_model_dir

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(mdr, "save_model_dir", disk_full)
    code, out, err = run_main(capsys, *flags)
    assert code == 1 and len(err) == 1 and "No space left on device" in err[0]
    assert "--resume" in err[0] and not (tmp_path / "mnist_digit_recognition_model").exists()

    monkeypatch.setattr(mdr, "save_model_dir", save)
    code, out, err = run_main(capsys, *flags, "--resume")
    assert code == 0, err
    assert not any(line.startswith("Epoch") for line in out), "it trained again"
    assert [row["epoch"] for row in read_metadata(tmp_path / "mnist_digit_recognition_model")
            ["history"]] == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist_digit_recognition_model"]


def test_failed_save_leaves_the_previous_model_intact(tmp_path):
    model_dir = tmp_path / "model"
    model = mdr.compile_model(mdr.build_model("mlp"))
    mdr.save_model_dir(model, model_dir, {"test_accuracy": 0.5})
    before = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}

    other = mdr.compile_model(mdr.build_model("cnn"))
    with pytest.raises(TypeError):  # metadata that cannot be written fails after the model files
        mdr.save_model_dir(other, model_dir, {"not json": object()})
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
    mdr.replace_directory(new, target)
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
        mdr.replace_directory(new, target)
    monkeypatch.undo()
    assert (target / "model.keras").read_text() == "old"
    assert previous.read_text() == "a stray file"
    assert (new / "model.keras").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.new", "m", "m.previous"]
