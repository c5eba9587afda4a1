"""Ctrl-C and SIGTERM during a run, and the work folder an interrupted run leaves for
--resume (its checkpoint, history and settings)."""

import contextlib
import json
import shutil
import signal
import threading
from pathlib import Path

from .errors import UsageError
from .lazy import keras

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
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = {number: signal.signal(number, interrupt)
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
