"""The command line's helpers: argparse with one-line errors and ranged number types, the
flags the actions share, tables; and the actions other than training and evaluation, predict
and serve."""

import argparse
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

from . import serve
from .classifier import answer_digits, load_classifier, picture_answerer, read_picture
from .errors import UsageError, UserError
from .mnist_files import NUM_CLASSES
from .model_files import DEFAULT_MODEL_DIR, read_metadata, resolve_model_dir

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


def whole_number(minimum, maximum=math.inf):
    """An argparse type for a whole number from minimum to maximum."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
        if not minimum <= value <= maximum:
            limits = f">= {minimum}" if maximum == math.inf else f"from {minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"must be a whole number {limits}, not {text!r}")
        return value
    return parse


positive_int = whole_number(1)


def number_in(low, high, *, high_included=False, low_included=True):
    """An argparse type for a finite float in [low, high) (or as the flags say)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
        above = value >= low if low_included else value > low
        below = value <= high if high_included else value < high
        if not (math.isfinite(value) and above and below):
            left, right = "[" if low_included else "(", "]" if high_included else ")"
            limits = f"in {left}{low:g}, {high:g}{right}" if high < math.inf else \
                f"a finite number {'>=' if low_included else '>'} {low:g}"
            raise argparse.ArgumentTypeError(f"must be {limits}, not {text!r}")
        return value
    return parse


def add_data_flag(parser):
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA") or None, metavar="PATH",
                        help="a Keras-layout mnist.npz or a folder with the four IDX files "
                             "(default: $MNIST_DATA, else Keras' download and cache)")


def add_model_dir_flag(parser):
    parser.add_argument("--model-dir", help=f"the model to use (default: {DEFAULT_MODEL_DIR} "
                        "in the working directory, else the one beside this script)")


def build_evaluate_parser(prog):
    parser = ArgumentParser(prog=prog, description="Test loss, accuracy, per-digit accuracy and "
                            "confusion matrix of a saved model; redraws its confusion_matrix.png, "
                            "misclassified.png and training_curves.png.")
    add_data_flag(parser)
    add_model_dir_flag(parser)
    return parser


def build_predict_parser(prog):
    parser = ArgumentParser(prog=prog, description="Classify digit pictures (PNG, JPEG, BMP, "
                            "GIF; any size, colour or grey, either polarity). A picture with "
                            "several digits gets its main one (the tallest), and all of them "
                            "left to right.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="image files to classify")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per file instead of text (with \"error\" "
                             "for a file that cannot be read)")
    add_model_dir_flag(parser)
    return parser


def build_serve_parser(prog):
    parser = ArgumentParser(prog=prog, description="Serve a page to draw digits on and see the "
                            "model's probabilities, and POST /predict (an image file's bytes or "
                            'JSON {"pixels": 28 rows of 28 numbers 0-255}). Ctrl-C stops it.')
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=whole_number(0, 65535), default=8000,
                        help="TCP port to listen on; 0 picks a free one (default: 8000)")
    parser.add_argument("--log-requests", action="store_true",
                        help="print a line per request (default: only those refused or failed)")
    add_model_dir_flag(parser)
    return parser


def format_duration(seconds):
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def print_table(rows):
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 2 + max(len(value) for _, value in rows))
    print(line, *(f"{name:<{width}}  {value}" for name, value in rows), line, sep="\n",
          flush=True)


def confusion_matrix_text(confusion):
    """The confusion matrix as lines of text: rows the true digit, columns the predicted."""
    lines = ["true \\ predicted " + "".join(f"{d:>6}" for d in range(NUM_CLASSES))]
    lines += [f"{true:>16} " + "".join(f"{n:>6}" for n in row)
              for true, row in enumerate(confusion)]
    return "\n".join(lines)


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


def run_predict(args):
    classify = load_classifier(resolve_model_dir(args.model_dir))
    failed = 0
    for path in args.files:  # each answer as soon as it is known, in the order of the files
        try:
            digits, main = read_picture(path)
        except UserError as error:
            failed += 1
            print(f"error: {error}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps({"file": path, "error": str(error)}), flush=True)
            continue
        answer = answer_digits(classify, digits, main)
        if args.json:
            print(json.dumps({"file": path, **answer}), flush=True)
        else:
            several = (f"; {len(digits)} digits found, left to right "
                       f"{''.join(map(str, answer['digits']))}") if len(digits) > 1 else ""
            print(f"{path}: {answer['digit']} ({answer['probability']:.1%}){several}", flush=True)
    return 1 if failed else 0


def run_serve(args):
    model_dir = resolve_model_dir(args.model_dir)
    classify = load_classifier(model_dir)
    metadata = read_metadata(model_dir)
    try:
        server = serve.make_server(picture_answerer(classify), args.host, args.port, {
            "status": "ok", "model": str(model_dir), "arch": metadata.get("model", {}).get("arch"),
            "test_accuracy": metadata.get("test_accuracy")}, log_requests=args.log_requests)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not serve.is_loopback(args.host):
        print(f"warning: serving on {args.host}, beyond this machine, without authentication: "
              "anyone who can reach it can use it", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address
    print(f"Serving {model_dir} on http://{host}:{server.server_port}/ (Ctrl-C stops it)",
          flush=True)
    serve.serve_forever(server, serve.serving_processes())
    print("Server stopped.", flush=True)
    return 0
