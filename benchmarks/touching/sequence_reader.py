"""A study: a network that reads a mark of two or three touching digits whole (a CTC reader, as
keras.io's "OCR model for reading Captchas"), in place of the cut where it is sure, against the
cut alone. Its seed 1 is the product's reader (`export --ship`: the shipped model's
not_a_digit/reader/), taken by the rule "replace 2.0" until 61d14a5, now where both networks find
its reading likelier (touching.Splitter.read_whole; weighing.py beside this file).

The mark is scaled to digit height (20 px, as MNIST's box) in a 28 x 84 strip (touching.wide_mark); a
small CNN turns it into 21 columns, a bidirectional GRU reads them, and CTC (blank + ten digits)
is its loss, so the digits need no fixed places. Trained on build_touching.py's renderings of the
54,000 training digits (the product reads each picture; those it reads as one mark are kept).

    python benchmarks/touching/sequence_reader.py build --count 45000 --seed 1   # cache/wide_s1.npz
    python benchmarks/touching/sequence_reader.py train --seed 1 --epochs 10     # cache/ctc_s1.keras
    python benchmarks/touching/sequence_reader.py build --count 90000 --seed 2   # cache/wide_s2.npz
    python benchmarks/touching/sequence_reader.py train --marks wide_s1 wide_s2 --epochs 8 --name ctcbig
    python benchmarks/touching/sequence_reader.py singles --count 15000 --seed 1  # cache/singles_s1.npz
    python benchmarks/touching/sequence_reader.py train --marks wide_s1 singles_s1 --name ctcsingles --epochs 8
    python benchmarks/touching/sequence_reader.py measure --model cache/ctc_s1.keras --limit 600
    python benchmarks/touching/sequence_reader.py measure --model cache/ctc_s{1,2,3}.keras --save-as NAME
    python benchmarks/touching/sequence_reader.py export --model cache/ctc_s1.keras  # LiteRT
    python benchmarks/touching/sequence_reader.py export --model cache/ctc_s1.keras --ship

`measure` reads the benchmark's touching renderings of the first N validation digits (the
study's dev set; measure.py's held-out rendering too) and pictures of five kinds the gate trained
on, with no digit, through the product's own steps (pictures.digits_ink, the gate's judgement,
touching.split_touching), each mark the gate sends to the cut also read by the sequence reader;
the reader's digits replace the cut's where it reads two or more at a confidence (its greedy
path's probability) of at least each threshold, or where its reading is likelier to it than the
cut's by each margin (CTC's log-probability); or ("also") that, and a mark the gate calls "not a
digit" without trying it as touching digits read by the reader where it is sure of two or more.
Writes results/touching_sequence_reader.json (or --save-as's name).
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE), str(HERE.parent), str(HERE.parent / "not_a_digit")]
from common import CACHE, validation_digits  # noqa: E402
from measure import VARIED, encoded, varied_pair  # noqa: E402
from mnist_digits import classifier, pictures, touching  # noqa: E402
from renderings import DIGITS_PER_FILE, RENDERINGS  # noqa: E402

HEIGHT, WIDTH = touching.STRIP_SHAPE
ctc_log_likelihood = touching.ctc_log_likelihood
STEPS = touching.STRIP_STEPS  # the columns CTC reads
THRESHOLDS = [0.0, 0.5, 0.8, 0.9, 0.97]  # the reader's confidence (its greedy path's probability)
MARGINS = [0.5, 1.0, 2.0]  # ...or how much likelier (log) than the cut's reading, at 0.5 or more
REPLACE = [1.0, 2.0]  # "likelier M", only where the cut found digits (no "not a digit" undone)
ALSO = [0.9, 0.97, 0.99]  # "likelier 2.0", and marks the gate calls "not a digit" without trying
                          # them as touching digits read where the reader is this sure of 2-3
TRAINED_KINDS = ["font_letters", "kana_kanji", "scribbles", "world_strokes", "pictograms"]


def build(args):
    from build_touching import touching_pictures
    marks, holds = [], []
    for grey, digits in touching_pictures(args.count, args.seed):
        inks, _, soft = pictures.digits_ink(grey)
        if len(inks) == 1:
            marks.append(touching.wide_mark(inks[0], soft)[0])
            holds.append(digits)
    np.savez_compressed(CACHE / f"wide_s{args.seed}.npz", marks=np.array(marks, np.float32),
                        holds=np.array(holds))
    print(f"{len(marks)} marks of {args.count} pictures")


def singles(args):
    """Single training digits (of the 54,000 the shipped model trained on) as marks the reader
    should read as one digit: each one dark on white at 28-112 px (a random size), its ink as
    the product finds it (pictures.digits_ink), in the reader's strip."""
    from common import N_TRAIN, mnist
    from renderings import enlarged
    arrays = mnist()
    x, y = arrays["x_train"][:N_TRAIN], arrays["y_train"][:N_TRAIN]
    rng = np.random.default_rng(args.seed)
    marks, holds = [], []
    for index in rng.choice(N_TRAIN, args.count, replace=False):
        size = int(rng.integers(28, 113))
        grey = 1 - enlarged(x[index], size)
        inks, _, soft = pictures.digits_ink(np.pad(grey, size // 4, constant_values=1))
        if len(inks) == 1:
            marks.append(touching.wide_mark(inks[0], soft)[0])
            holds.append(str(y[index]))
    np.savez_compressed(CACHE / f"singles_s{args.seed}.npz", marks=np.array(marks, np.float32),
                        holds=np.array(holds))
    print(f"{len(marks)} marks of {args.count} digits")


def reader_network(keras):
    layers = keras.layers

    def conv(filters):
        return [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                layers.BatchNormalization(), layers.ReLU()]

    inputs = keras.Input((HEIGHT, WIDTH, 1))
    augment = keras.Sequential([layers.RandomTranslation(0.08, 0.04, fill_mode="constant"),
                                layers.RandomZoom(0.08, fill_mode="constant"),
                                layers.RandomRotation(0.02, fill_mode="constant")])
    hidden = augment(inputs)
    for layer in [*conv(32), layers.MaxPooling2D(2), *conv(64), layers.MaxPooling2D(2),
                  *conv(96), *conv(96), layers.Permute((2, 1, 3)),
                  layers.Reshape((STEPS, HEIGHT // 4 * 96)), layers.Dropout(0.25),
                  layers.Dense(128, activation="relu"),
                  layers.Bidirectional(layers.GRU(64, return_sequences=True)),
                  layers.Dense(11)]:  # logits: 0 is CTC's blank, 1-10 the digits 0-9
        hidden = layer(hidden)
    return keras.Model(inputs, hidden)


def train(args):
    import keras
    import tensorflow as tf
    from keras import ops
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(args.seed)
    data = [np.load(CACHE / f"{name}.npz") for name in args.marks]
    x = np.concatenate([part["marks"] for part in data])[..., np.newaxis]
    y = np.array([[int(c) + 1 for c in h] + [0] * (3 - len(h)) for part in data
                  for h in part["holds"]], np.int32)
    held = 2000

    def ctc(y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        lengths = ops.sum(ops.cast(y_true > 0, "int32"), axis=1)
        steps = ops.full((ops.shape(y_true)[0],), STEPS, dtype="int32")
        return ops.ctc_loss(y_true, y_pred, lengths, steps, mask_index=0)

    network = reader_network(keras)
    network.compile(keras.optimizers.Adam(1e-3), loss=ctc)
    network.fit(x[held:], y[held:], validation_data=(x[:held], y[:held]), epochs=args.epochs,
                batch_size=64, verbose=2,
                callbacks=[keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=1)])
    network.save(CACHE / f"{args.name}_s{args.seed}.keras")
    right = sum(greedy(logits)[0] == [v - 1 for v in target if v]
                for logits, target in zip(network.predict(x[:held], verbose=0), y[:held]))
    print(f"held-out marks read whole: {right / held:.1%}")


def greedy(logits):
    """(digits, confidence): CTC's greedy path (repeats merged, blanks dropped), its probability."""
    return touching.surest_path(logits)[:2]


def reader_logits(model, keras):
    """logits(strip (28, 84)) -> (STEPS, 11): MODEL's LiteRT export (export's MODEL.tflite) where
    there is one, as the product runs its reader, else the Keras reader."""
    path = Path(model).with_suffix(".tflite")
    if not path.exists():
        reader = keras.saving.load_model(model, compile=False)
        return lambda strip: np.asarray(reader(strip[None, ..., None], training=False))[0]
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    image_in, logits_out = (details[0]["index"] for details in
                            (interpreter.get_input_details(), interpreter.get_output_details()))

    def logits(strip):
        interpreter.set_tensor(image_in, strip[None, ..., None])
        interpreter.invoke()
        return interpreter.get_tensor(logits_out)[0]
    return logits


def measure(args):
    import keras
    from negatives import negative_pictures
    x, y = validation_digits()
    classify, gate = classifier.load_classifier(), classifier.load_gate()
    readers = [reader_logits(model, keras) for model in args.model]

    judge = touching.judge_for(classify, gate)  # as the product's splitter judges

    def likelihood(logits, digits):
        """log P(digits) under the reader (CTC: every alignment); -inf for a reading with no digit."""
        if not digits or None in digits:
            return -np.inf
        return ctc_log_likelihood(logits, [d + 1 for d in digits])

    def marks_read(data):
        """Per reader, per mark: (the product's digits, the reader's digits or None, its
        confidence, how much likelier the reader finds its reading than the cut's). The cut is
        made once for all the readers."""
        try:
            inks, _, soft = pictures.digits_ink(pictures.decode_picture(data))
        except ValueError:
            return [[] for _ in readers]
        if not inks:
            return [[] for _ in readers]
        marks = np.stack([pictures.mnist_mark(ink, soft) for ink in inks])
        found = [[] for _ in readers]
        for ink, mark, score, no_digit, trying in zip(inks, marks, *judge(marks)):
            pieces = touching.split_touching(ink, soft, judge, score) if trying else []
            cut = ([int(classify(m[None, ..., None]).argmax()) for _, m in pieces] if pieces else
                   [None if no_digit else int(classify(mark[None, ..., None]).argmax())])
            for reader, reader_found in zip(readers, found):
                whole, confidence, gain = None, 0.0, 0.0
                if trying or no_digit:
                    logits = reader(touching.wide_mark(ink, soft)[0])
                    whole, confidence = greedy(logits)
                    if trying and len(whole) >= 2:
                        gain = likelihood(logits, whole) - likelihood(logits, cut)
                reader_found.append((cut, whole, confidence, gain, trying))
        return found

    def takes(rule, cut, whole, confidence, gain, trying):
        """Whether the rule takes the reader's reading of a mark: "sure T", a mark tried as
        touching digits read at a confidence of T or more; "likelier M", one read at 0.5 or more
        and likelier than the cut's reading by M (a cut to no digit least likely); "replace M",
        "likelier M" where the cut found digits; "also T", "likelier 2.0", and a mark the gate
        calls no digit without trying it read at T or more."""
        kind, value = rule.split()
        if kind == "cut" or whole is None or len(whole) < 2:
            return False
        if kind == "replace":
            return None not in cut and takes(f"likelier {value}", cut, whole, confidence, gain,
                                             trying)
        if kind == "also" and not trying:
            return confidence >= float(value)
        if not trying:
            return False
        if kind == "sure":
            return confidence >= float(value)
        return confidence >= 0.5 and gain >= (2.0 if kind == "also" else float(value))

    def reading(found, rule):
        """The digits read: each mark's the reader's where the rule takes it, else the cut's."""
        return [digit for cut, *read in found for digit in
                (read[0] if takes(rule, cut, *read) else cut)]

    rules = ["cut alone"] + [f"sure {t}" for t in THRESHOLDS] + \
        [f"likelier {m}" for m in MARGINS] + [f"replace {m}" for m in REPLACE] + \
        [f"also {t}" for t in ALSO]

    results = [{"model": model, "limit": args.limit, "digits": "validation", "rows": {},
                "negatives": {}} for model in args.model]
    rows = [*(n for n, (kind, _) in RENDERINGS.items() if kind == "touching"), VARIED]
    rows = [name for name in rows if not args.rows or any(part in name for part in args.rows)]
    for name in rows if args.limit else []:  # --limit 0: only the pictures with no digit
        count, render = (2, varied_pair) if name == VARIED else (DIGITS_PER_FILE[name], RENDERINGS[name][1])
        right = [dict.fromkeys(rules, 0) for _ in readers]
        for index in range(args.limit):
            digits = [x[(index + k) % len(x)] for k in range(count)]
            found = marks_read(encoded(*render(digits[0], index, *digits[1:])))
            want = [int(y[(index + k) % len(y)]) for k in range(count)]
            for reader_right, reader_found in zip(right, found):
                for rule in rules:
                    reader_right[rule] += reading(reader_found, rule) == want
        for result, reader_right in zip(results, right):
            result["rows"][name] = {t: n / args.limit for t, n in reader_right.items()}
            print(Path(result["model"]).stem, name, result["rows"][name], flush=True)
    for kind in args.kinds:
        found = [marks_read(data) for data, _, _ in negative_pictures(kind, args.negatives, 2)]
        for result, reader_found in zip(results, zip(*found)):
            result["negatives"][kind] = {
                rule: sum(all(d is None for d in reading(f, rule)) for f in reader_found)
                / args.negatives for rule in rules}
            print(Path(result["model"]).stem, kind, result["negatives"][kind], flush=True)
    out = HERE.parent / "results" / f"{args.save_as}.json"
    out.write_text(json.dumps(results[0] if len(results) == 1 else results, indent=1) + "\n")


def inference_network(reader, keras):
    """The trained reader without its augmentation, its GRU unrolled over the STEPS columns: the
    same logits, and a LiteRT export of plain operations (a GRU left rolled needs TensorFlow's
    TensorList operations, which LiteRT's interpreter does not have)."""
    inputs = keras.Input((HEIGHT, WIDTH, 1))
    hidden = inputs
    for layer in reader.layers[2:]:  # after the input and the augmentation
        if isinstance(layer, keras.layers.Bidirectional):
            config = layer.get_config()
            for direction in ("layer", "backward_layer"):
                if direction in config:
                    config[direction]["config"]["unroll"] = True
            unrolled = keras.layers.Bidirectional.from_config(config)
            hidden = unrolled(hidden)
            unrolled.set_weights(layer.get_weights())
        else:
            hidden = layer(hidden)
    return keras.Model(inputs, hidden)


def export(args):
    """MODEL's inference network as a LiteRT file (MODEL with .tflite; with --ship, as
    model.keras and model.tflite in the shipped model's not_a_digit/reader/, where the product
    reads it); prints how far its logits are from the Keras inference network's (the reader's
    own) on the first 500 held-back marks, and its time a mark."""
    import time

    import keras
    from ai_edge_litert.interpreter import Interpreter
    network = inference_network(keras.saving.load_model(args.model, compile=False), keras)
    path = Path(args.model).with_suffix(".tflite")
    if args.ship:
        folder = HERE.parent.parent / "mnist_digit_recognition_model" / "not_a_digit" / "reader"
        folder.mkdir(exist_ok=True)
        network.save(folder / "model.keras")
        path = folder / "model.tflite"
    network.export(str(path), format="litert", verbose=False)
    marks = np.load(CACHE / "wide_s1.npz")["marks"][:500, ..., np.newaxis]
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    image_in, logits_out = (details[0]["index"] for details in
                            (interpreter.get_input_details(), interpreter.get_output_details()))
    logits = []
    started = time.perf_counter()
    for mark in marks:
        interpreter.set_tensor(image_in, mark[np.newaxis])
        interpreter.invoke()
        logits.append(interpreter.get_tensor(logits_out)[0])
    seconds = (time.perf_counter() - started) / len(marks)
    keras_logits = network.predict(marks, verbose=0)
    same = sum(greedy(a)[0] == greedy(b)[0] for a, b in zip(logits, keras_logits))
    print(f"{path}: logits within {np.abs(np.array(logits) - keras_logits).max():.2g} of Keras', "
          f"the same reading on {same} of {len(marks)} marks; {seconds * 1000:.2f} ms a mark")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("build")
    command.add_argument("--count", type=int, default=45000)
    command.add_argument("--seed", type=int, default=1)
    command = commands.add_parser("singles")
    command.add_argument("--count", type=int, default=15000)
    command.add_argument("--seed", type=int, default=1)
    command = commands.add_parser("train")
    command.add_argument("--seed", type=int, default=1)
    command.add_argument("--epochs", type=int, default=10)
    command.add_argument("--marks", nargs="+", default=["wide_s1"],
                         help="build's or singles' marks in cache/ to train on (the first's "
                              "first 2,000 held back: put wide_s1 first)")
    command.add_argument("--name", default="ctc", help="saved as cache/NAME_sSEED.keras")
    command = commands.add_parser("measure")
    command.add_argument("--model", nargs="+", default=[str(CACHE / "ctc_s1.keras")],
                         help="one reader or several, each measured on the same cuts")
    command.add_argument("--rows", nargs="+", help="only the renderings whose names hold one "
                         "of these (default: all)")
    command.add_argument("--kinds", nargs="+", default=TRAINED_KINDS,
                         help="negatives.py's kinds of pictures with no digit (default: five the "
                              "gate trained on)")
    command.add_argument("--save-as", default="touching_sequence_reader",
                         help="the results' name in benchmarks/results/")
    command.add_argument("--limit", type=int, default=600,
                         help="validation digits for each touching rendering (0: none)")
    command.add_argument("--negatives", type=int, default=300)
    command = commands.add_parser("export")
    command.add_argument("--model", default=str(CACHE / "ctc_s1.keras"))
    command.add_argument("--ship", action="store_true", help="into the shipped model")
    args = parser.parse_args()
    run = {"build": build, "singles": singles, "train": train, "measure": measure,
           "export": export}
    run[args.command](args)


if __name__ == "__main__":
    main()
