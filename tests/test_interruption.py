"""mnist_digits/interruption.py: Ctrl-C and SIGTERM during training, --resume, a diverging run,
and the same seed giving the same metrics (SPEC sections 2 and 7)."""

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import pytest

import mnist_digit_recognition as mdr
from conftest import SCRIPT, our_stderr_lines, run_main, snapshot
from mnist_digits import interruption
from mnist_digits.model_files import DEFAULT_MODEL_DIR


def read_metadata(model_dir):
    return json.loads((model_dir / "metadata.json").read_text())


def start_program(flags, cwd):
    """The program in a new process, its stdout and stderr piped."""
    # A process started with Ctrl-C ignored (a background job of a script) passes that on
    # to its children, and Python then leaves it ignored: the child must start with it handled.
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, str(SCRIPT), *map(str, flags)], cwd=cwd, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    finally:
        signal.signal(signal.SIGINT, ignored)


def start_and_signal_in_epoch(flags, epoch, cwd, how=signal.SIGINT):
    """Run the program; once it prints "Epoch N/", send it the signal: (exit status, stderr)."""
    process = start_program(flags, cwd)
    for line in process.stdout:
        if line.startswith(f"Epoch {epoch}/"):
            break
    time.sleep(0.05)
    process.send_signal(how)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def main_quietly(*args):
    """main(args) in this process, its output kept: (exit status, stdout lines, stderr lines)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = mdr.main([str(arg) for arg in args])
    return status, out.getvalue().splitlines(), err.getvalue().splitlines()


STOP_POINTS = 6  # moments in a run at which test_a_stop_at_any_moment_... stops it


# Batches of 1 make an epoch 540 short steps of the mlp (half a second or more), so the signal
# sent a twentieth of a second into epoch 2 lands in epoch 2 (with batches of 4 of the cnn and
# a second's wait, a machine with bfloat16 had finished the run).
RESUMABLE = ["--epochs", "2", "--seed", "1", "--batch-size", "1", "--arch", "mlp",
             "--no-augmentation"]


@pytest.fixture(scope="module")
def interrupted_and_resumed(small_npz, tmp_path_factory):
    """A folder with a saved model; a run of RESUMABLE on it interrupted by Ctrl-C in epoch 2
    (a real process), then repeated without and with --resume; and the same run uninterrupted
    in another model directory. The runs other than the interrupted one run in this process."""
    folder = tmp_path_factory.mktemp("resume")
    flags = ["--data", small_npz, *RESUMABLE]
    run = argparse.Namespace(folder=folder, model_dir=folder / "mnist_digit_recognition_model")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        assert main_quietly(*flags, "--epochs", "1", "--train-size", "200")[0] == 0
        run.old = (run.model_dir / "model.keras").read_bytes()
        run.interrupted = start_and_signal_in_epoch(flags, 2, folder)
        run.kept = (run.model_dir / "model.keras").read_bytes()
        run.without_resume = main_quietly(*flags)
        run.resumed = main_quietly(*flags, "--resume")
        run.uninterrupted = main_quietly(*flags, "--model-dir", folder / "uninterrupted")
    return run


def test_an_interrupted_run_keeps_the_old_model_and_says_to_resume(interrupted_and_resumed):
    run = interrupted_and_resumed
    code, stderr = run.interrupted
    assert code == 130, stderr
    lines = our_stderr_lines(stderr)
    assert len(lines) == 1 and "interrupted after 1 finished epoch" in lines[0], stderr
    assert "run the same command with --resume to continue" in lines[0]
    assert "Traceback" not in stderr
    assert run.kept == run.old, "the saved model was touched"
    code, _, err = run.without_resume  # refuses to throw the work away
    assert code == 2 and len(err) == 1 and "add --resume to continue it" in err[0], err


def test_resume_continues_from_the_checkpoint_and_saves_what_it_trained(interrupted_and_resumed):
    """The resumed run trains epoch 2 only, from the weights epoch 1 ended with: its epoch 2
    learns as the uninterrupted run's did (from fresh weights its loss would be epoch 1's), and
    the model it saves scores as well."""
    run = interrupted_and_resumed
    code, out, err = run.resumed
    assert code == 0, err
    assert "Epoch 2/2" in out and "Epoch 1/2" not in out
    assert "Resuming the interrupted run from epoch 2 of 2: its checkpoint in " \
        "mnist_digit_recognition_model.partial/" in out, out
    resumed = read_metadata(run.model_dir)
    whole = read_metadata(run.folder / "uninterrupted")
    assert run.uninterrupted[0] == 0, run.uninterrupted[2]
    assert [row["epoch"] for row in resumed["history"]] == [1, 2]
    without_time = lambda row: {k: v for k, v in row.items() if k != "epoch_seconds"}
    assert without_time(resumed["history"][0]) == without_time(whole["history"][0])
    first, second = resumed["history"][0]["loss"], resumed["history"][1]["loss"]
    assert second < 0.5 * first, "epoch 2 started from fresh weights"
    assert second == pytest.approx(whole["history"][1]["loss"], rel=0.1)
    assert resumed["history"][1]["learning_rate"] == whole["history"][1]["learning_rate"]
    assert whole["test_accuracy"] > 0.75
    assert resumed["test_accuracy"] == pytest.approx(whole["test_accuracy"], abs=0.06)
    assert resumed["test_loss"] == pytest.approx(whole["test_loss"], rel=0.25)
    assert sorted(p.name for p in run.folder.iterdir()) == [
        "mnist_digit_recognition_model", "mnist_digit_recognition_model.previous",
        "uninterrupted"], "the .partial folder was left"
    assert (run.folder / "mnist_digit_recognition_model.previous" / "model.keras").read_bytes() \
        == run.old, "the model the resumed run replaced is not the one kept"


def test_resume_ends_with_the_metrics_of_the_uninterrupted_run(interrupted_and_resumed):
    """SPEC section 2: a resumed --seed run is the uninterrupted run, to the last bit: each
    epoch's shuffle (and augmentation and dropout) comes from that epoch's own seeds."""
    run = interrupted_and_resumed
    assert run.resumed[0] == 0 and run.uninterrupted[0] == 0
    resumed = read_metadata(run.model_dir)
    whole = read_metadata(run.folder / "uninterrupted")
    assert [row["val_loss"] for row in resumed["history"]] == \
        [row["val_loss"] for row in whole["history"]]
    assert (resumed["test_loss"], resumed["test_accuracy"]) == \
        (whole["test_loss"], whole["test_accuracy"])


def test_a_resumed_cnn_run_is_the_uninterrupted_run(small_npz, tmp_path, set_sigint):
    """The default network (augmentation, batch norm, dropout from its second epoch) for two
    epochs on a slice, stopped by Ctrl-C after its first epoch and resumed, ends where the run
    that was never stopped ends: the same validation loss each epoch, the same test metrics."""
    set_sigint(signal.default_int_handler)
    (x_train, y_train), (x_test, y_test) = mdr.load_mnist(small_npz)
    recipe = mdr.Recipe(epochs=2, batch_size=16, seed=4).resolved()

    def train(**options):
        keras.utils.set_random_seed(recipe.seed)  # as --seed does: the same initial weights
        model = mdr.compile_model(mdr.build_model_for(recipe, fused_batchnorm=True), recipe)
        history = mdr.train(model, x_train[:320], y_train[:320], recipe, verbose=0, **options)
        return history, mdr.evaluate(model, x_test, y_test)[0]

    ctrl_c_after_epoch_1 = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: epoch == 0 and signal.raise_signal(signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        train(work_dir=tmp_path, callbacks=[ctrl_c_after_epoch_1])
    assert interruption.read_progress(tmp_path)["epochs"] == 1
    (resumed, resumed_scores), (whole, whole_scores) = train(work_dir=tmp_path), train()
    assert [row["val_loss"] for row in resumed] == [row["val_loss"] for row in whole]
    assert (resumed_scores["test_loss"], resumed_scores["test_accuracy"]) == \
        (whole_scores["test_loss"], whole_scores["test_accuracy"])


def test_a_stop_at_any_moment_ends_in_one_line_and_keeps_what_was_saved(small_npz, tmp_path):
    """Ctrl-C or SIGTERM at moments spread over a whole run (starting up, loading, each epoch,
    evaluating, each file of the save): each run ends in one line with exit status 130 (or 0,
    having finished), the model saved before it intact or the new one whole, nothing
    half-written beside it, and the finished epochs kept for --resume where it says so."""
    flags = ["--data", small_npz, "--epochs", "2", "--train-size", "400", "--seed", "1",
             "--arch", "mlp", "--no-augmentation"]
    model_dir, work_dir = tmp_path / DEFAULT_MODEL_DIR, tmp_path / f"{DEFAULT_MODEL_DIR}.partial"
    started = time.monotonic()
    assert start_program(flags, tmp_path).wait(timeout=300) == 0
    whole_run, saved = time.monotonic() - started, snapshot(model_dir)
    for point in range(STOP_POINTS):
        process = start_program(flags, tmp_path)
        time.sleep(whole_run * (point + 0.5) / STOP_POINTS)
        how = signal.SIGTERM if point % 2 else signal.SIGINT
        process.send_signal(how)
        stdout, stderr = process.communicate(timeout=300)
        lines = our_stderr_lines(stderr)
        assert "Traceback" not in stderr and len(lines) <= 1, stderr
        if "saved to" in stdout:  # it had finished (Python ending, the signal ends it at once)
            assert process.returncode in (0, -how) and not lines, stderr
            assert read_metadata(model_dir)["history"][-1]["epoch"] == 2
            saved = snapshot(model_dir)
        else:
            assert process.returncode == 130 and lines[0].startswith("error: ") \
                and "interrupted" in lines[0], stderr
            assert snapshot(model_dir) == saved, f"the saved model was touched: {lines[0]}"
            if "--resume" in lines[0]:
                assert interruption.read_progress(work_dir)["epochs"] >= 1, lines[0]
        assert {path.name for path in tmp_path.iterdir()} <= {
            model_dir.name, f"{model_dir.name}.previous", work_dir.name}, "something half-written"
        shutil.rmtree(work_dir, ignore_errors=True)


def test_sigterm_stops_training_as_ctrl_c_does(small_npz, tmp_path, capsys, monkeypatch):
    """A stopped container, `kill`: the same one line, the old model kept."""
    monkeypatch.chdir(tmp_path)
    flags = ["--data", small_npz, *RESUMABLE]
    assert run_main(capsys, *flags, "--epochs", "1", "--train-size", "200")[0] == 0
    model_dir = tmp_path / "mnist_digit_recognition_model"
    old = (model_dir / "model.keras").read_bytes()
    code, stderr = start_and_signal_in_epoch(flags, 2, tmp_path, signal.SIGTERM)
    assert code == 130, stderr
    lines = our_stderr_lines(stderr)
    assert len(lines) == 1 and "interrupted after 1 finished epoch" in lines[0], stderr
    assert "--resume" in lines[0] and "Traceback" not in stderr
    assert (model_dir / "model.keras").read_bytes() == old, "the saved model was touched"


def test_interrupted_in_the_first_epoch_offers_nothing_to_resume(small_npz, tmp_path):
    code, stderr = start_and_signal_in_epoch(
        ["--data", small_npz, "--epochs", "2", "--batch-size", "1", "--arch", "mlp"], 1, tmp_path)
    assert code == 130, stderr
    lines = our_stderr_lines(stderr)
    assert len(lines) == 1 and "first epoch" in lines[0] and "nothing to resume" in lines[0]
    assert list(tmp_path.iterdir()) == [], "nothing to resume, so nothing is kept"


def train_mlp(small_npz, at_first_step):
    """Train the mlp for an epoch, calling at_first_step() as its first step begins: (the
    KeyboardInterrupt train raised, or None; the steps the optimizer took)."""
    (x_train, y_train), _ = mdr.load_mnist(small_npz)
    recipe = mdr.Recipe(arch="mlp", epochs=1, batch_size=8, augment=False)
    model = mdr.compile_model(mdr.build_model_for(recipe))

    def call(batch, logs):
        if batch == 0:
            at_first_step()
    raised = None
    try:
        mdr.train(model, x_train[:200], y_train[:200], recipe, verbose=0,
                  callbacks=[keras.callbacks.LambdaCallback(on_train_batch_begin=call)])
    except KeyboardInterrupt as error:
        raised = error
    return raised, int(model.optimizer.iterations)


def ctrl_c(times=1):
    """Press Ctrl-C `times` times, each to this thread, so each is handled before the next."""
    for _ in range(times):
        signal.raise_signal(signal.SIGINT)


@pytest.fixture
def set_sigint():
    """Set this process's SIGINT handler for the test (it may run with SIGINT ignored)."""
    previous = signal.getsignal(signal.SIGINT)
    yield lambda handler: signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_training_at_the_end_of_the_step_under_way(small_npz, set_sigint):
    # Raised inside TensorFlow, KeyboardInterrupt can become another error: a run signalled
    # while its first step was traced ended in "TypeError: ... Flatten.call()" (exit status 1).
    # The first step here is traced after the signal: it runs to its end, then training stops.
    set_sigint(signal.default_int_handler)
    raised, steps = train_mlp(small_npz, ctrl_c)
    assert raised and steps == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_stops_training_at_once(small_npz, set_sigint):
    set_sigint(signal.default_int_handler)
    raised, steps = train_mlp(small_npz, lambda: ctrl_c(2))
    assert raised and steps == 0


def test_an_error_from_a_second_ctrl_c_inside_tensorflow_is_taken_for_it(small_npz, set_sigint):
    def ctrl_c_twice_turned_into_an_error():
        ctrl_c()
        try:
            ctrl_c()
        except KeyboardInterrupt:  # as TensorFlow's tracing turns it into another error
            raise TypeError("Failed to convert elements of (None, 784) to Tensor") from None
    set_sigint(signal.default_int_handler)
    raised, steps = train_mlp(small_npz, ctrl_c_twice_turned_into_an_error)
    assert raised and steps == 0


def test_ctrl_c_ignored_stays_ignored(small_npz, set_sigint):
    set_sigint(signal.SIG_IGN)  # as in a background job
    during = []
    raised, steps = train_mlp(small_npz, lambda: (during.append(signal.getsignal(signal.SIGINT)),
                                                  ctrl_c()))
    assert raised is None and steps == 23 and during == [signal.SIG_IGN]
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_train_leaves_the_sigterm_handler_as_it_found_it(small_npz):
    before = signal.getsignal(signal.SIGTERM)
    train_mlp(small_npz, lambda: None)
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


# An absurd rate. The loss explodes in the first steps; in about one run of six
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
