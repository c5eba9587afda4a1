"""Ctrl-C and SIGTERM during a run, and the work folder an interrupted run leaves for
--resume (its checkpoint, history and settings)."""

import contextlib
import json
import shutil
import signal
import threading
from pathlib import Path

from .errors import Interrupted, TrainingDiverged, UsageError, UserError
from .lazy import keras
from .model_files import is_model_dir, read_metadata, write_atomically

HISTORY = "history.json"  # in the work folder: the epochs finished so far

def signals_to_handle(*numbers):
    """Those of the signals this code may handle: none outside the main thread (signals reach
    only it), nor one the process ignores (Ctrl-C in a background job) or C code handles."""
    if threading.current_thread() is not threading.main_thread():
        return []
    return [number for number in numbers
            if signal.getsignal(number) not in (signal.SIG_IGN, None)]


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """SIGTERM (a stopped container, `kill`) stops the program as Ctrl-C does; restored after."""
    previous = {number: signal.signal(number, signal.default_int_handler)
                for number in signals_to_handle(signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def stop_between_steps():
    """Ctrl-C and SIGTERM stop training at the end of the step under way: a KeyboardInterrupt
    raised inside TensorFlow can come out of it as another error (a TypeError while it traces
    the first step) or not at all. Yields a callback that raises KeyboardInterrupt there once a
    signal has come; a second signal raises it at once, and an error it causes inside
    TensorFlow is taken for it. Only the signals_to_handle."""
    requested, training = [], True

    def request(signum, frame):
        requested.append(signum)
        if len(requested) > 1 and training:
            raise KeyboardInterrupt

    def stop_if_requested(*_, **__):
        if requested:
            raise KeyboardInterrupt
    stopper = keras.callbacks.LambdaCallback(on_train_batch_end=stop_if_requested,
                                             on_test_batch_end=stop_if_requested)
    previous = {number: signal.signal(number, request)
                for number in signals_to_handle(signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopper
    except Exception:
        if len(requested) > 1:
            raise KeyboardInterrupt from None
        raise
    finally:
        training = False  # from here a signal only counts
        for number, handler in previous.items():
            signal.signal(number, handler)
    stop_if_requested()  # a signal during the last step's callbacks


def prepare_work_dir(model_dir, settings, resume, worker=None):
    """The folder of an in-progress run, `<model-dir>.partial`: checkpoint, history, and the
    settings that define the run (which --resume must repeat). Each other worker of a cluster
    keeps its own, `<model-dir>.worker-N.partial`."""
    suffix = f".{worker.replace(' ', '-')}.partial" if worker else ".partial"
    work_dir = Path(f"{Path(model_dir)}{suffix}")
    settings_file = work_dir / "settings.json"
    if resume:
        if not settings_file.is_file():
            raise UsageError(f"--resume: no interrupted run in {work_dir}; "
                             "start a new run without --resume")
        previous = json.loads(settings_file.read_text())
        differences = [f"--{key.replace('_', '-')} {previous.get(key)!r} (now {value!r})"
                       for key, value in settings.items() if previous.get(key) != value]
        if differences:
            raise UsageError("--resume: the interrupted run used " + ", ".join(differences) +
                             ": repeat its command with --resume")
        return work_dir
    if (work_dir / "backup").exists():
        raise UsageError(f"an interrupted run is saved in {work_dir}: add --resume to continue "
                         "it, or delete that folder to start afresh")
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    settings_file.write_text(json.dumps(settings, indent=2) + "\n")
    return work_dir


def read_history(work_dir):
    """The epochs an interrupted run in work_dir finished, a dict each ([] if none)."""
    path = Path(work_dir) / HISTORY if work_dir else None
    return json.loads(path.read_text()) if path and path.exists() else []


def resumable(work_dir, history):
    """The callbacks that let train() resume in work_dir (none without one): after each epoch,
    the history so far (`history`, which an earlier callback has just appended to) and a
    checkpoint of the weights and optimizer (Keras' BackupAndRestore)."""
    if not work_dir:
        return []
    keep_history = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: (
        write_atomically(Path(work_dir) / HISTORY, json.dumps(history, indent=1))))
    # Two alternating checkpoints: a signal during a save spoils neither. Kept after the last
    # epoch too (until the model is saved): --resume then only saves.
    return [keep_history, keras.callbacks.BackupAndRestore(
        str(Path(work_dir) / "backup"), double_checkpoint=True, delete_checkpoint=False)]


def left_as_it_was(model_dir):
    """What a run that stops before its save leaves, in words."""
    return f"{model_dir} is as it was" if is_model_dir(model_dir) else \
        f"nothing was saved to {model_dir}"


@contextlib.contextmanager
def training_stops_explained(work_dir, model_dir):
    """Training: Ctrl-C, SIGTERM or a divergence ends in one line saying what became of the
    work (the finished epochs stay in work_dir for --resume; nothing of a diverged run does)."""
    try:
        yield
    except KeyboardInterrupt:
        done = len(read_history(work_dir))
        if not done:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise Interrupted(f"interrupted in the first epoch: {left_as_it_was(model_dir)}, and "
                              "there is nothing to resume") from None
        raise Interrupted(f"interrupted after {done} finished epoch{'s' * (done != 1)}: "
                          f"{left_as_it_was(model_dir)}; run the same command with --resume to "
                          "continue") from None
    except TrainingDiverged as error:
        shutil.rmtree(work_dir, ignore_errors=True)
        kept = "the saved model was not changed" if is_model_dir(model_dir) \
            else "nothing was saved"
        raise TrainingDiverged(f"{error}; {kept}") from None


@contextlib.contextmanager
def saving_stops_explained(model_dir):
    """Evaluation and saving: Ctrl-C, SIGTERM or a failed write ends in one line; the work
    folder keeps the trained weights, and --resume then only saves."""
    try:
        yield
    except (KeyboardInterrupt, OSError) as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        reason = "interrupted" if interrupted else f"failed ({error.strerror or error})"
        raise (Interrupted if interrupted else UserError)(
            f"saving the trained model {reason}: {left_as_it_was(model_dir)}; run the same "
            "command with --resume to save it without training again") from None


def recorded_seed(model_dirs):
    """The seed an interrupted run into one of model_dirs used (its work folder's settings), or
    the one the first of them was trained with; None if neither says."""
    for model_dir in model_dirs:
        settings = Path(f"{model_dir}.partial") / "settings.json"
        if settings.is_file():
            return json.loads(settings.read_text()).get("seed")
    return read_metadata(model_dirs[0]).get("settings", {}).get("seed")


def finished_run(model_dir, settings):
    """The metadata of the model in model_dir if a run with these settings finished it (and
    none is under way), else None: --resume does not train it again."""
    if Path(f"{model_dir}.partial").exists():
        return None
    metadata = read_metadata(model_dir)
    saved = metadata.get("settings", {})
    return metadata if {key: saved.get(key) for key in settings} == settings else None
