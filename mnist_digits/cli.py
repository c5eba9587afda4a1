"""The command line's helpers: argparse with one-line errors, ranged number types and hints
for a mistyped action or flag; the flags the actions share; how an action ends (one line for a
user's mistake); the training flags' checks and --compare-batchnorm's two runs; the tables."""

import argparse
import difflib
import importlib.util
import math
import os
import sys
from pathlib import Path

from .errors import Interrupted, UsageError, UserError
from .hardware import check_tf_config, wants_cluster
from .interruption import RECEIVED, finished_run, recorded_seed, stops_as_ctrl_c
from .mnist_files import check_data_path
from .model_files import DEFAULT_MODEL_DIR, check_model_dir


def count(n, noun):
    """'1 epoch', '15 epochs', '60,000 images'."""
    return f"{n:,} {noun}{'s' * (n != 1)}"


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as a UsageError (one line, exit status 2) and takes
    flags only as written in full (--epoch is not --epochs)."""

    def __init__(self, **options):
        super().__init__(allow_abbrev=False, **options)

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def number_in(low, high=math.inf, *, whole=False, low_included=True, high_included=False):
    """An argparse type: a finite number in [low, high), or a whole number in [low, high]
    (`whole`); the flags may close or open either end."""
    high_included = high_included or whole

    def parse(text):
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise argparse.ArgumentTypeError(f"must be {kind}, not {text!r}") from None
        above = value >= low if low_included else value > low
        below = value <= high if high_included else value < high
        if math.isfinite(value) and above and below:
            return value
        if whole:
            limits = f"a whole number >= {low}" if high == math.inf else \
                f"a whole number from {low} to {high}"
        elif high == math.inf:
            limits = f"a finite number {'>=' if low_included else '>'} {low:g}"
        else:
            limits = (f"in {'[' if low_included else '('}{low:g}, {high:g}"
                      f"{']' if high_included else ')'}")
        raise argparse.ArgumentTypeError(f"must be {limits}, not {text!r}")
    return parse


def whole_number(low, high=math.inf):
    """An argparse type: a whole number from low to high."""
    return number_in(low, high, whole=True)


def add_data_flag(parser):
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA") or None, metavar="PATH",
                        help="a Keras-layout mnist.npz or a folder with the four IDX files "
                             "(default: $MNIST_DATA, else Keras' download and cache)")


def add_model_dir_flag(parser):
    parser.add_argument("--model-dir", help=f"the model to use (default: {DEFAULT_MODEL_DIR} "
                        "in the working directory, else the one beside this script)")


PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def parse_flags(parser, argv, actions=()):
    """parser.parse_args(argv), with a hint where a word it did not take is one of the other
    `actions` (or nearly one: the action comes first), a picture (for `predict`), or nearly one
    of its flags."""
    args, unknown = parser.parse_known_args(argv)
    for word in unknown if actions else []:
        meant = difflib.get_close_matches(word.lstrip("-"), actions, 1)
        if meant:
            hint = ("the action comes first:" if meant[0] == word else
                    "the action is a word, not a flag:" if meant[0] == word.lstrip("-") else
                    f"did you mean the action {meant[0]}?")
            parser.error(f"unrecognized arguments: {' '.join(unknown)}; {hint} "
                         f"mnist_digit_recognition.py {meant[0]} [its flags and files]")
    pictures = [word for word in unknown if is_picture(word)]
    if actions and pictures:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}; to read pictures, the action "
                     f"comes first: mnist_digit_recognition.py predict {' '.join(pictures)}")
    flags = [flag for flag in parser._option_string_actions if flag.startswith("--")]
    for word in unknown:
        flag = word.partition("=")[0]
        meant = [f for f in flags if f.startswith(flag)] or difflib.get_close_matches(flag, flags, 1)
        if word.startswith("--") and meant:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}; did you mean "
                         f"{' or '.join(meant)}?")
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def is_picture(word):
    """A word on the command line that names a picture: a file, or a name such as d.png."""
    return not word.startswith("-") and (word.lower().endswith(PICTURE_SUFFIXES)
                                         or Path(word).is_file())


def run_action(action):
    """Run an action (a function returning the exit status) as the command line does: SIGTERM
    stops it as Ctrl-C does, and a stop or a user's mistake ends in one line on stderr with its
    exit status (130 for a stop, 2 for usage errors), never a traceback."""
    try:
        with stops_as_ctrl_c():
            return action()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:  # outside training and saving (which say more): nothing changed
        print("error: interrupted", file=sys.stderr)
        return Interrupted.exit_code
    except BrokenPipeError:  # the output went to a program that stopped reading (| head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception:  # a library's error while Ctrl-C reached it (TensorFlow importing)
        if not RECEIVED:
            raise
        print("error: interrupted", file=sys.stderr)
        return Interrupted.exit_code


def check_training_flags(args):
    """The training flags' mistakes that need no TensorFlow to find, found before its seconds
    of start-up."""
    if args.compare_batchnorm and args.arch == "mlp":
        raise UsageError("--compare-batchnorm: the mlp has no batch norm layers to compare; "
                         "use another --arch")
    if args.arch == "mlp" and (args.conv_dropout or args.dense_dropout):
        raise UsageError("--conv-dropout/--dense-dropout: the mlp has no dropout layers; "
                         "use another --arch")
    if wants_cluster(args.distribute):
        check_tf_config(os.environ["TF_CONFIG"])
        if args.augment and args.augmentation_engine != "layers":
            raise UsageError("--augmentation-engine imagedatagenerator runs in one Python "
                             "process; use the layers engine to train on several workers")
        if args.seed is None:
            raise UsageError("several workers need the same --seed N on each (they split the "
                             "batches of one shuffled order)")
    check_data_path(args.data)
    if args.tensorboard:
        check_tensorboard_dir(args.tensorboard)
    for folder in comparison_dirs(args):
        check_model_dir(folder)


def check_sizes(args, n_images, n_to_train_on):
    """--train-size and --batch-size against the n_images MNIST has for training, of which
    n_to_train_on are left once the validation split is held out."""
    if args.train_size and args.train_size > n_images:
        raise UsageError(f"--train-size {args.train_size:,} is more than the {n_images:,} "
                         "training images")
    if args.batch_size > n_to_train_on:
        raise UsageError(f"--batch-size {args.batch_size:,} is more than the "
                         f"{count(n_to_train_on, 'image')} to train on: one step per epoch would "
                         "learn next to nothing; use a smaller --batch-size")


def check_tensorboard_dir(folder):
    """A folder TensorBoard can write to, made only once it is known to be wanted."""
    if Path(folder).exists() and not Path(folder).is_dir():
        raise UsageError(f"cannot write TensorBoard logs to {folder}: it is a file; choose "
                         "another --tensorboard DIR")
    if importlib.util.find_spec("tensorboard") is None:  # TensorFlow 2.21 does not bring it
        raise UsageError("--tensorboard needs the tensorboard package: pip install "
                         "tensorboard, or leave out --tensorboard")
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot write TensorBoard logs to {folder} ({error.strerror}): "
                         "choose another --tensorboard DIR") from None


def comparison_dirs(args):
    """The model directories a training run writes: MODEL_DIR, and MODEL_DIR-no-batchnorm
    beside it under --compare-batchnorm."""
    return [args.model_dir] + [f"{args.model_dir}-no-batchnorm"] * args.compare_batchnorm


def compare_batchnorm(args, train, settings_of):
    """--compare-batchnorm: train(flags) with batch norm and without (the same seed, data and
    flags otherwise), each into its model directory, then one side-by-side table. With
    --resume, a variant that finished is not trained again, and the seed an interrupted
    comparison drew is used again. settings_of(flags): what defines a run (training_settings)."""
    dirs = comparison_dirs(args)
    seed = args.seed if args.seed is not None else recorded_seed(dirs) if args.resume else None
    seed = seed if seed is not None else int.from_bytes(os.urandom(3), "big")
    results = {}
    for name, batchnorm, model_dir in zip(("batch norm", "no batch norm"), (True, False), dirs):
        run = argparse.Namespace(**vars(args) | {"batchnorm": batchnorm, "model_dir": model_dir,
                                                 "seed": seed, "compare_batchnorm": False})
        finished = args.resume and finished_run(model_dir, settings_of(run))
        results[name] = finished or train(run)
    if all(results.values()):  # a worker that is not the chief has none to show
        print_comparison(seed, results, dirs)
    return results


def format_duration(seconds):
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def print_table(rows):
    """(name, value) rows, aligned, between two rules: the summaries."""
    lines = aligned(rows)
    rule = "-" * max(map(len, lines))
    print(rule, *lines, rule, sep="\n", flush=True)


def print_columns(rows, right_aligned=()):
    """Rows of cells (the first a header) in aligned columns, left-aligned but for the
    columns numbered in right_aligned."""
    print(*aligned(rows, right_aligned), sep="\n", flush=True)


def aligned(rows, right_aligned=()):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(f"{cell:>{width}}" if i in right_aligned else f"{cell:<{width}}"
                      for i, (cell, width) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


def print_summary(metadata, model_dir):
    """The table a training run ends with."""
    settings, model, data = metadata["settings"], metadata["model"], metadata["data"]
    augmentation = (f"{settings['augmentation_engine']} (rotation {settings['rotation_range']:g} "
                    f"deg, zoom {settings['zoom_range']:g}, shift {settings['shift_range']:g})"
                    if settings["augment"] else "none")
    epochs = len(metadata["history"])
    print_table([
        ("model", f"{model['arch']}, batch norm {'on' if model['batchnorm'] else 'off'}, "
                  f"dropout {model['conv_dropout']:g}/{model['dense_dropout']:g}"
                  + (f" from epoch {model['dropout_from_epoch']}"
                     if model.get("dropout_from_epoch", 1) > 1 else "")),
        ("parameters", f"{model['parameters']:,}"),
        ("training", f"{count(epochs, 'epoch')}, batch {settings['batch_size']}, "
                     f"{settings['optimizer']} (learning rate "
                     f"{settings['learning_rate'] or 'default'})"),
        ("augmentation", augmentation),
        ("data", f"{data['train_images']:,} train, {data['validation_images']:,} validation, "
                 f"{data['test_images']:,} test ({data['source']})"),
        ("device", f"{metadata['device']}, {metadata['precision']}, "
                   f"{metadata['distribution']}"),
        ("test loss", f"{metadata['test_loss']:.4f}"),
        ("test accuracy", f"{metadata['test_accuracy']:.2%}"),
        ("wall time", format_duration(metadata["wall_seconds"])),
        ("saved to", f"{Path(model_dir).resolve()}/"),
    ])


def print_comparison(seed, results, model_dirs):
    """--compare-batchnorm's table: each variant's {name: metadata} and model directory."""
    print(f"\nBatch norm compared (seed {seed}):")
    print_columns([("", "parameters", "test accuracy", "test loss", "wall time",
                    "model directory")] +
                  [(name, f"{m['model']['parameters']:,}", f"{m['test_accuracy']:.2%}",
                    f"{m['test_loss']:.4f}", format_duration(m["wall_seconds"]), model_dir)
                   for (name, m), model_dir in zip(results.items(), model_dirs)],
                  right_aligned={1, 2, 3, 4})
