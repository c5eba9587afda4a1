"""The actions that read a saved model: evaluate (its flags and what it prints; the script
scores the model), predict and serve (flags and what they run)."""

import json
import sys

from . import figures, serve
from .classifier import answer_file, load_classifier, load_gate, load_reader, picture_answerer
from .cli import ArgumentParser, add_data_flag, add_model_dir_flag, print_table, whole_number
from .errors import UsageError, UserError
from .mnist_files import NUM_CLASSES
from .model_files import NOT_A_DIGIT_DIR, read_metadata, resolve_model_dir, shipped_model_dir


def build_evaluate_parser(prog):
    parser = ArgumentParser(prog=prog, description="Test loss, accuracy, per-digit accuracy and "
                            "confusion matrix of a saved model; redraws its confusion_matrix.png, "
                            "misclassified.png and training_curves.png.")
    add_data_flag(parser)
    add_model_dir_flag(parser)
    return parser


def build_predict_parser(prog):
    parser = ArgumentParser(prog=prog, description="Classify digit pictures (PNG, JPEG, BMP, "
                            "GIF; any size, colour or grey, either polarity). Digits side by side "
                            "are read as the number they make, left to right (--json also "
                            "names the main digit, the tallest).")
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
                        help="TCP port to listen on; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--log-requests", action="store_true",
                        help="print a line per request (default: only those refused or failed)")
    add_model_dir_flag(parser)
    return parser


def print_evaluation(model_dir, results):
    """What `evaluate` prints: the scores, per digit, and the confusion matrix."""
    print_table([("model", str(model_dir)), ("test loss", f"{results['test_loss']:.4f}"),
                 ("test accuracy", f"{results['test_accuracy']:.2%}"),
                 *[(f"digit {digit}", f"{accuracy:.2%}")
                   for digit, accuracy in results["per_digit_accuracy"].items()]])
    print(confusion_matrix_text(results["confusion_matrix"]), flush=True)


def confusion_matrix_text(confusion):
    """The confusion matrix as lines of text: rows the true digit, columns the predicted."""
    lines = ["true \\ predicted " + "".join(f"{d:>6}" for d in range(NUM_CLASSES))]
    lines += [f"{true:>16} " + "".join(f"{n:>6}" for n in row)
              for true, row in enumerate(confusion)]
    return "\n".join(lines)


def redraw_reports(model_dir, results, x_test, y_test, probabilities):
    """`evaluate`: the model directory's pictures drawn anew; a warning if one cannot be."""
    failures = figures.draw_reports(model_dir, results, x_test, y_test, probabilities,
                                    history=read_metadata(model_dir).get("history"))
    if failures:
        error = next(iter(failures.values()))
        print(f"warning: could not write {', '.join(failures)} in {model_dir} "
              f"({error.strerror or error}); the scores above stand", file=sys.stderr)


def run_predict(args):
    model_dir = resolve_model_dir(args.model_dir)
    classify, gate = load_classifier(model_dir), load_gate_or_warn(model_dir)
    reader = None if gate is None else load_reader(model_dir, when_needed=True)
    failed = 0
    for path in args.files:  # each answer as soon as it is known, in the order of the files
        try:
            answer = answer_file(path, classify, gate, reader)
        except UserError as error:
            failed += 1
            print(f"error: {error}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps({"file": path, "error": str(error)}), flush=True)
            continue
        print(json.dumps({"file": path, **answer}) if args.json else answer_text(path, answer),
              flush=True)
    return 1 if failed else 0


def load_gate_or_warn(model_dir):
    """load_gate's, with a warning where the model directory has none (one made before it)."""
    gate = load_gate(model_dir)
    if gate is None:
        print(f"warning: {model_dir} has no {NOT_A_DIGIT_DIR}/, so every mark is read as a digit: "
              f"copy {shipped_model_dir() / NOT_A_DIGIT_DIR} into it to say \"not a digit\"",
              file=sys.stderr, flush=True)
    return gate


def answer_text(path, answer):
    """`predict`'s line for a picture: "seven.png: 7 (100.0%)", "x.png: not a digit (closest:
    4, 31.0%)", and for several marks the number they make and each one's probability, "47.png:
    47 (2 digits: 100.0%, 99.9%)", a ? for a mark that is not a digit, "4x.png: 4? (2 marks:
    100.0%, not a digit)", and "ab.png: not a digit (2 marks, none a digit)"."""
    if "digits" not in answer:
        if answer["not_a_digit"]:
            return (f"{path}: not a digit (closest: {answer['closest_digit']}, "
                    f"{answer['probability']:.1%})")
        return f"{path}: {answer['number']} ({answer['probability']:.1%})"
    digits = answer["digits"]
    if all(digit is None for digit in digits):
        return f"{path}: not a digit ({len(digits)} marks, none a digit)"
    number = "".join("?" if digit is None else str(digit) for digit in digits)
    each = ", ".join("not a digit" if digit is None else f"{p:.1%}"
                     for digit, p in zip(digits, answer["digit_probabilities"]))
    return f"{path}: {number} ({len(digits)} {'marks' if None in digits else 'digits'}: {each})"


def run_serve(args):
    model_dir = resolve_model_dir(args.model_dir)
    classify, gate = load_classifier(model_dir), load_gate_or_warn(model_dir)
    reader = None if gate is None else load_reader(model_dir)
    metadata = read_metadata(model_dir)
    try:
        answer = picture_answerer(classify, gate, reader)
        server = serve.make_server(answer, args.host, args.port, {
            "status": "ok", "model": str(model_dir), "arch": metadata.get("model", {}).get("arch"),
            "test_accuracy": metadata.get("test_accuracy"),
            "says_not_a_digit": gate is not None}, log_requests=args.log_requests)
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
