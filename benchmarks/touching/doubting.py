"""A study (not kept): which marks the product leaves whole (never tried, or tried and not cut)
the reader (not_a_digit/reader/) should read too. For each such mark the reader's reading is
recorded, weighed by both networks (touching.Splitter.weigh) against the mark read as one
digit, and every rule applied: "dS gG", a mark the gate calls a digit whose "not a digit" and
"digits that touch" add up to S or more (the gate doubts it); "nS gG", those and also every mark
the gate calls no digit; "... p", each of the reader's pieces a digit to the gate too; "... wW",
only a mark at least W times as wide as it is tall. A rule takes the reader's digits where it
reads two or more and both networks find them e^G likelier than the one digit (as
touching.READER_GAIN does for the cut's digits). Not kept in the product: it reads single digits
as two, whatever the mark's width (touching/README.md, "A mark the gate doubts").

Each picture is read once through the product's own steps (classifier.picture_answerer, the
shipped networks). The touching renderings of the first LIMIT validation digits, the other
renderings of the first SINGLES (answered otherwise than by the product: what a rule costs), and
NEG pictures with no digit of each of the five kinds the gate trained on (negatives.py, seed 2:
the share answered all "not a digit").

    python benchmarks/touching/doubting.py --limit 600 --singles 6000 --negatives 300

Writes results/touching_doubting.json (or --save-as's), with each rendering's doubted marks
(dS, S >= 0.005) the reader reads as two or more digits: their doubt, width over height, gain
(log) and the reader's digits, by picture. With --reader, a study's reader
(sequence_reader.py's cache/NAME_sSEED.keras, on LiteRT where it has been exported) reads in
place of the shipped one, in the product's own steps too. --renderings and --negatives 0 split a
run into parts, each with its own --save-as (their "rows" merged by hand).
"""

import argparse
import itertools
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent), str(HERE.parent / "not_a_digit")]
from common import validation_digits  # noqa: E402
from measure import encoded  # noqa: E402
from mnist_digits import pictures, touching  # noqa: E402
from negatives import negative_pictures  # noqa: E402
from renderings import DIGITS_PER_FILE, RENDERINGS  # noqa: E402
from sequence_reader import TRAINED_KINDS, reader_logits  # noqa: E402
from weighing import recording_answerer  # noqa: E402

RESULTS = HERE.parent / "results" / "touching_doubting.json"
RULES = ([f"d{s} g{g}" for s, g in itertools.product((0.005, 0.02, 0.05, 0.1, 0.2, 0.5),
                                                     (0, 1, 2, 4))]
         + [f"d{s} g{g} w{w}" for s, g, w in itertools.product((0.005, 0.05, 0.2), (1, 4),
                                                                (0.8, 0.9, 1.0, 1.1, 1.2))]
         + [f"n{s} g{g}{p}" for s, g, p in itertools.product((0.05,), (1, 4, 8), ("", " p"))])
SHOWN = "d0.05 g1"  # the rule printed as the study runs


class Recording(touching.Splitter):
    """The product's Splitter, recording for each mark it leaves whole where it lands among the
    picture's marks, the gate's view of it, and both networks' weights of the reader's reading
    and of the mark as one digit."""

    whole = ()  # until called (a picture already in MNIST's form never calls it)

    def __init__(self, classify, gate, reader=None):
        super().__init__(classify, gate, reader)
        self.gate = gate

    def __call__(self, inks, marks, sizes, soft):
        split_marks, split_sizes = super().__call__(inks, marks, sizes, soft)
        self.whole = []
        images = np.stack(marks)
        _, no_digit, _ = self.judge(images)
        doubt = self.gate.no_digit_score(self.gate.network(images[..., np.newaxis]))
        places = [id(mark) for mark in split_marks]
        for ink, mark, none, score in zip(inks, marks, no_digit, doubt):
            if id(mark) not in places:
                continue  # cut into digits
            logits, digits, _, reader_pieces = self.reader_reading(ink, soft)
            record = {"place": places.index(id(mark)), "no_digit": bool(none),
                      "doubt": float(score), "reader": digits, "aspect": aspect(ink),
                      "one_digit": self.weigh(logits, [(ink, mark)])}
            if reader_pieces is not None:
                _, pieces_none, _ = self.judge(np.stack([piece for _, piece in reader_pieces]))
                record.update(reading=self.weigh(logits, reader_pieces, digits),
                              pieces_digits=not pieces_none.any())
            self.whole.append(record)
        return split_marks, split_sizes


def aspect(ink):
    """The width of a mark's ink over its height."""
    rows, cols = np.nonzero(ink > 0)
    return float((np.ptp(cols) + 1) / (np.ptp(rows) + 1))


def takes_reader(rule, mark):
    """Whether `rule` takes the reader's reading of a recorded mark ("... wW": only a mark at
    least W times as wide as it is tall)."""
    if "reading" not in mark:
        return False
    scope, gain, *rest = rule.split()
    pieces = [part for part in rest if part == "p"]
    widths = [float(part[1:]) for part in rest if part.startswith("w")]
    if widths and mark["aspect"] < widths[0]:
        return False
    if mark["no_digit"] and scope[0] == "d":
        return False
    if not mark["no_digit"] and mark["doubt"] < float(scope[1:]):
        return False
    if pieces and not mark["pieces_digits"]:
        return False
    return mark["reading"] - mark["one_digit"] >= float(gain[1:])


def digits_under(rule, digits, whole):
    """The picture's digits (None for a mark that holds none) as the rule reads them: the
    product's, each recorded mark's replaced by the reader's where the rule takes them."""
    digits, shift = list(digits), 0
    for mark in whole:
        if takes_reader(rule, mark):
            place = mark["place"] + shift
            digits[place:place + 1] = mark["reader"]
            shift += len(mark["reader"]) - 1
    return digits


def number(digits):
    return None if None in digits else "".join(map(str, digits))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=600, help="pictures a touching rendering")
    parser.add_argument("--singles", type=int, default=6000, help="pictures a rendering of "
                        "single digits (and of two digits side by side)")
    parser.add_argument("--negatives", type=int, default=300, help="pictures a kind (0: none)")
    parser.add_argument("--reader", help="a study's reader, its path (default: the shipped one)")
    parser.add_argument("--renderings", nargs="+", help="only the renderings whose names hold one "
                        "of these (default: all)")
    parser.add_argument("--save-as", metavar="STEM", default=RESULTS.stem,
                        help="write results/STEM.json (default: %(default)s)")
    args = parser.parse_args()
    x, y = validation_digits()
    answer, splitters = recording_answerer(Recording, args.reader and batch_reader(args.reader))
    results = {"limit": args.limit, "singles": args.singles, "negatives": args.negatives,
               "reader": args.reader or "shipped", "rows": {}}

    def read(data, want):
        """{rule: whether it reads the picture right (all "not a digit" where want is None)},
        {rule: whether it answers the picture otherwise than the product}, [each doubted mark
        the reader reads as two or more digits: doubt, width over height, gain, its digits]."""
        splitters.clear()
        try:
            found = answer(pictures.decode_picture(data))
        except ValueError:  # blank: no digit either
            return {rule: want is None for rule in ["before", *RULES]}, {}, []
        before = found.get("digits") or [found["digit"]]
        whole = splitters[-1].whole
        readings = {rule: digits_under(rule, before, whole) for rule in RULES}
        readings["before"] = before
        right = {rule: all(d is None for d in digits) if want is None else number(digits) == want
                 for rule, digits in readings.items()}
        changed = {rule: digits != before for rule, digits in readings.items()}
        doubted = [[round(mark["doubt"], 4), round(mark["aspect"], 3),
                    round(mark["reading"] - mark["one_digit"], 2), mark["reader"]]
                   for mark in whole if "reading" in mark and not mark["no_digit"]
                   and mark["doubt"] >= 0.005]
        return right, changed, doubted

    for name, (kind, render) in RENDERINGS.items():
        if args.renderings and not any(part in name for part in args.renderings):
            continue
        count = DIGITS_PER_FILE.get(name, 1)
        limit = args.limit if kind == "touching" else args.singles
        right, changed = dict.fromkeys(["before", *RULES], 0), dict.fromkeys(RULES, 0)
        doubted = {}  # {picture: its doubted marks the reader reads as two or more digits}
        for index in range(limit):
            digits = [x[(index + k) % len(x)] for k in range(count)]
            want = "".join(str(int(y[(index + k) % len(y)])) for k in range(count))
            picture_right, picture_changed, doubted[index] = read(
                encoded(*render(digits[0], index, *digits[1:])), want)
            for rule in right:
                right[rule] += picture_right[rule]
            for rule in changed:
                changed[rule] += picture_changed.get(rule, False)
        results["rows"][name] = {"kind": kind, "pictures": limit,
                                 "right": {rule: n / limit for rule, n in right.items()},
                                 "answered_otherwise": changed,
                                 "doubted": {index: marks for index, marks in doubted.items()
                                             if marks}}
        print(f"{name}: the product {right['before'] / limit:.2%}, {SHOWN} "
              f"{right[SHOWN] / limit:.2%} ({changed[SHOWN]} answered otherwise)", flush=True)
    for kind in TRAINED_KINDS if args.negatives else []:
        none = dict.fromkeys(["before", *RULES], 0)
        for data, _, _ in negative_pictures(kind, args.negatives, 2):
            picture_right, _, _ = read(data, None)
            for rule in none:
                none[rule] += picture_right[rule]
        results["rows"][kind] = {"kind": "negatives", "pictures": args.negatives,
                                 "right": {rule: n / args.negatives for rule, n in none.items()}}
        print(f"{kind}: all \"not a digit\": the product {none['before'] / args.negatives:.2%}, "
              f"{SHOWN} {none[SHOWN] / args.negatives:.2%}", flush=True)
    RESULTS.with_name(f"{args.save_as}.json").write_text(json.dumps(results, indent=1) + "\n")
    print_table(results)


def batch_reader(model):
    """reader(strips (N, 28, 84, 1)) -> logits (N, 21, 11), as classifier.load_reader's, from a
    study's reader (sequence_reader.reader_logits)."""
    import keras
    logits = reader_logits(model, keras)
    return lambda strips: np.stack([logits(strip[..., 0]) for strip in strips])


def print_table(results):
    """Each rule: the four touching rows, single-digit pictures answered otherwise, and the
    trained kinds' pictures all "not a digit" (the mean of the five kinds); "before": the
    product."""
    rows = results["rows"]
    touching_rows = [name for name, row in rows.items() if row["kind"] == "touching"]
    for rule in ["before", *RULES]:
        touching_figures = " / ".join(f"{rows[name]['right'][rule]:.2%}" for name in touching_rows)
        otherwise = sum(row.get("answered_otherwise", {}).get(rule, 0) for row in rows.values()
                        if row["kind"] not in ("touching", "negatives"))
        negatives = [row["right"][rule] for row in rows.values() if row["kind"] == "negatives"]
        print(f"{rule:12s} {touching_figures} | single digits answered otherwise {otherwise} | "
              f"trained kinds \"not a digit\" {math.fsum(negatives) / max(1, len(negatives)):.2%}")


if __name__ == "__main__":
    main()
