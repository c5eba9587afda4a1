"""Ctrl-C and SIGTERM during a run, and --resume: the work folder an interrupted run leaves
(its settings, the weights and optimizer after each epoch, the history and the learning-rate
plateau's state) and the random streams a resumed run continues exactly (each epoch's seeds
derived from the run's seed and the epoch)."""

import contextlib
import functools
import json
import os
import shutil
import signal
import threading
from pathlib import Path

import numpy as np

from .errors import Interrupted, TrainingDiverged, UsageError, UserError
from .hardware import any_worker, is_multi_worker
from .lazy import keras
from .model_files import is_model_dir, read_metadata, write_atomically

PROGRESS = "progress.json"  # in the work folder: the epochs finished, history, plateau state
PLATEAU_STATE = ("best", "wait", "cooldown_counter")  # what ReduceLROnPlateau keeps
RECEIVED = []  # the stop signals (Ctrl-C, SIGTERM) this process has received


def signals_to_handle(*numbers):
    """Those of the signals this code may handle: none outside the main thread (signals reach
    only it), nor one the process ignores (Ctrl-C in a background job) or C code handles."""
    if threading.current_thread() is not threading.main_thread():
        return []
    return [number for number in numbers
            if signal.getsignal(number) not in (signal.SIG_IGN, None)]


@contextlib.contextmanager
def stops_as_ctrl_c():
    """For a whole action: Ctrl-C and SIGTERM (a stopped container, `kill`) raise
    KeyboardInterrupt, and are remembered (RECEIVED), so that an error one causes inside a
    library (TensorFlow importing or tracing) is known for the stop it is. Restored after."""
    def interrupt(signum, frame):
        RECEIVED.append(signum)
        raise KeyboardInterrupt
    previous = {number: signal.signal(number, interrupt)
                for number in signals_to_handle(signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class DeferredStop:
    """The stop signals received while a stop is deferred (stops_deferred): check() raises
    KeyboardInterrupt once one has come."""

    def __init__(self):
        self.requested = []

    def check(self):
        if self.requested:
            raise KeyboardInterrupt


@contextlib.contextmanager
def stops_deferred():
    """Ctrl-C and SIGTERM stop at the next check() of the DeferredStop this yields (the end of a
    training step, the next file of a save): a KeyboardInterrupt raised inside TensorFlow can
    come out of it as another error (a TypeError while it traces a step) or not at all. A
    second signal raises it at once, and an error it causes inside TensorFlow is taken for it.
    Only the signals_to_handle."""
    stop, deferring = DeferredStop(), True

    def request(signum, frame):
        RECEIVED.append(signum)
        stop.requested.append(signum)
        if len(stop.requested) > 1 and deferring:
            raise KeyboardInterrupt
    previous = {number: signal.signal(number, request)
                for number in signals_to_handle(signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    except Exception:
        if len(stop.requested) > 1:
            raise KeyboardInterrupt from None
        raise
    finally:
        deferring = False  # from here a signal only counts
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def stop_between_steps(strategy=None):
    """stops_deferred for training: yields a Keras callback that stops at the end of the
    training or validation step under way once a signal has come. The workers of a cluster
    (MultiWorkerMirroredStrategy) agree at the end of each training step: a stop on any of
    them stops all of them there, each with its own line, where the others would wait for it."""
    with stops_deferred() as stop:
        if is_multi_worker(strategy):
            def stop_if_any_worker_stops(batch, logs):
                if any_worker(strategy, bool(stop.requested)):
                    raise KeyboardInterrupt
            yield keras.callbacks.LambdaCallback(on_train_batch_end=stop_if_any_worker_stops)
        else:
            def check(batch, logs):
                stop.check()
            yield keras.callbacks.LambdaCallback(on_train_batch_end=check,
                                                 on_test_batch_end=check)
        stop.check()  # a signal during the last step's callbacks


def prepare_work_dir(model_dir, settings, resume, worker=None):
    """The folder of an in-progress run, `<model-dir>.partial`: its checkpoint and progress
    (epoch_checkpoint), and the settings that define the run (which --resume must repeat).
    Each other worker of a cluster keeps its own, `<model-dir>.worker-N.partial`."""
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
    if (work_dir / PROGRESS).exists():
        raise UsageError(f"an interrupted run is saved in {work_dir}: add --resume to continue "
                         "it, or delete that folder to start afresh")
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    settings_file.write_text(json.dumps(settings, indent=2) + "\n")
    return work_dir


def epoch_seeds(seed, epochs):
    """(epochs, 3) integers: for each epoch, the seeds of its shuffle, its augmentation and its
    dropout, derived from the run's seed and the epoch (NumPy's SeedSequence): a resumed run
    rebuilds the streams of the epochs it has left. No seed: a new run each time."""
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    return np.array([np.random.SeedSequence([seed, epoch]).generate_state(3) % 2**31
                     for epoch in range(epochs)], np.int64).reshape(epochs, 3)


def reseeded_dropout(model, seeds):
    """A callback that gives every Dropout layer the stream of masks of each epoch's dropout
    seed (seeds: epoch_seeds), where Keras would go on from the stream's state in this
    process (which a checkpoint does not keep)."""
    layers = [layer for layer in model.layers if getattr(layer, "seed_generator", None)]

    def on_epoch_begin(epoch, logs):
        for number, layer in enumerate(layers):
            layer.seed_generator.state.assign([int(seeds[epoch, 2]) + number, 0])
    return keras.callbacks.LambdaCallback(on_epoch_begin=on_epoch_begin)


def epoch_flows(generator, x, y, batch_size, seeds):
    """ImageDataGenerator's flow over (x, y), a new one each epoch from that epoch's shuffle
    seed (seeds: epoch_seeds, from the first epoch to train on): a keras.utils.PyDataset."""
    return epoch_flows_class()(generator, x, y, batch_size, seeds)


@functools.cache
def epoch_flows_class():  # defined on first use: Keras takes seconds to import
    class EpochFlows(keras.utils.PyDataset):
        def __init__(self, generator, x, y, batch_size, seeds):
            super().__init__()
            self.generator, self.x, self.y, self.batch_size = generator, x, y, batch_size
            self.seeds, self.epoch = seeds, 0
            self.flow = self.new_flow()

        def new_flow(self):
            seed = int(self.seeds[min(self.epoch, len(self.seeds) - 1), 0])
            return self.generator.flow(self.x, self.y, batch_size=self.batch_size,
                                       shuffle=True, seed=seed)

        def __len__(self):
            return len(self.flow)

        def __getitem__(self, index):
            return self.flow[index]

        def on_epoch_end(self):
            self.epoch += 1
            self.flow = self.new_flow()
    return EpochFlows


def read_progress(work_dir):
    """What an interrupted run in work_dir saved after its last finished epoch: {"epochs": N,
    "history": [a dict per epoch], "plateau": ReduceLROnPlateau's state}; {} if nothing."""
    path = Path(work_dir) / PROGRESS if work_dir else None
    return json.loads(path.read_text()) if path and path.exists() else {}


def read_history(work_dir):
    """The epochs an interrupted run in work_dir finished, a dict each ([] if none)."""
    return read_progress(work_dir).get("history", [])


def restore(model, work_dir, epochs):
    """The number of epochs an interrupted run in work_dir finished (0 if none); its weights
    and optimizer state are loaded into model, and it says so."""
    done = read_progress(work_dir).get("epochs", 0)
    if done:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(Path(work_dir) / f"epoch-{done}.weights.h5")
        going_on = f"from epoch {done + 1} of {epochs}" if done < epochs else \
            f"after its last epoch ({done} of {epochs}), to save it"
        print(f"Resuming the interrupted run {going_on}: its checkpoint in {work_dir}/",
              flush=True)
    return done


def epoch_checkpoint(model, work_dir, history, plateau):
    """A callback that keeps, after each epoch, in work_dir: the weights and optimizer state
    (epoch-N.weights.h5), then the history (`history`, which an earlier callback has just
    appended to) and the learning-rate plateau's state (progress.json), each file written whole
    or not at all. In a resumed run it gives the plateau back its state once the plateau has
    reset itself at the start of training (place it after the plateau)."""
    work_dir = Path(work_dir)

    def restore_plateau(logs):
        for name, value in read_progress(work_dir).get("plateau", {}).items():
            setattr(plateau, name, value)

    def save(epoch, logs):
        weights = work_dir / f"epoch-{epoch + 1}.weights.h5"
        partial = work_dir / "partial.weights.h5"  # Keras wants this ending
        model.save_weights(partial)
        os.replace(partial, weights)
        state = {name: float(getattr(plateau, name)) for name in PLATEAU_STATE}
        write_atomically(work_dir / PROGRESS, json.dumps(
            {"epochs": epoch + 1, "history": history, "plateau": state}, indent=1))
        for older in work_dir.glob("epoch-*.weights.h5"):  # progress.json names the newest
            if older != weights:
                older.unlink()
    return keras.callbacks.LambdaCallback(on_train_begin=restore_plateau, on_epoch_end=save)


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
    """Evaluation and saving: Ctrl-C or SIGTERM stop at the next check(), which this yields
    (stops_deferred: between the files of the save, the last before the swap into place; one
    after it is too late to stop), and end in one line, as a failed write does; the work folder
    keeps the trained weights, and --resume then only saves."""
    try:
        with stops_deferred() as stop:
            yield stop.check
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
