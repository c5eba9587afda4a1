"""A study: where the cut found digits in a mark and the reader (not_a_digit/reader/) reads the
whole mark otherwise, which reading to take. Rules: "replace G", the rule until 61d14a5: the
reader's where its surest path's probability is 0.5 or more and its reading is e^G likelier than
the cut's to the reader alone (CTC); "both M wW sS", the reader's where its reading is e^M
likelier than the cut's to both networks, the reader's log-likelihood plus W times the digit
network's log-probability of each piece's digit (the reader's pieces: the ink cut half-way
between the places it read its digits at), and its surest path's probability S or more (the
product's rule, touching.Splitter.read_whole: M = READER_GAIN, W = 1, S = 0).

Each picture is read once through the product's own steps (classifier.picture_answerer, the
shipped networks); each such mark's readings are recorded and every rule applied to them. The
touching renderings of the first N validation digits (the study's dev set). Pictures with no
digit are left out: every rule chooses between two readings in digits, so none changes them.

    python benchmarks/touching/weighing.py --limit 600

Writes results/touching_weighing.json.
"""

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent), str(HERE.parent / "not_a_digit")]
from common import validation_digits  # noqa: E402
from measure import encoded  # noqa: E402
from mnist_digits import classifier, pictures, touching  # noqa: E402
from renderings import DIGITS_PER_FILE, RENDERINGS  # noqa: E402

RESULTS = HERE.parent / "results" / "touching_weighing.json"
RULES = (["replace 1.0", "replace 2.0", "replace 3.0"]
         + [f"both {m} w{w} s{s}" for s, m, w in itertools.product(
             (0.0, 0.5), (-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0), (0.5, 0.75, 1.0, 1.5))])


class Recording(touching.Splitter):
    """The product's Splitter, recording for each mark the cut found digits in: where its
    digits land among the picture's, both readings and what each rule weighs them by (from the
    reader's reading the product made, not read again)."""

    def __init__(self, classify, gate, reader=None):
        super().__init__(classify, gate, reader)
        self.inks, self.marks_read = [], []

    def __call__(self, inks, marks, sizes, soft):
        self.inks, self.marks_read = [id(ink) for ink in inks], []
        return super().__call__(inks, marks, sizes, soft)

    def reader_reading(self, ink, soft):
        self.reading = super().reader_reading(ink, soft)
        return self.reading

    def read_whole(self, ink, soft, pieces):
        taken, probabilities = super().read_whole(ink, soft, pieces)
        logits, digits, _, reader_pieces = self.reading
        cut, cut_digits = self.pieces_log_likelihood(pieces)
        cut = [int(digit) for digit in cut]
        mark = {"index": self.inks.index(id(ink)), "count": len(taken), "cut": cut,
                "reader": digits, "sureness": touching.surest_path(logits)[1],
                "cut_reader": touching.ctc_log_likelihood(logits, [d + 1 for d in cut]),
                "cut_digits": float(cut_digits)}
        if reader_pieces is not None:
            mark.update(reader_reader=touching.ctc_log_likelihood(logits, [d + 1 for d in digits]),
                        reader_digits=float(self.pieces_log_likelihood(reader_pieces, digits)[1]))
        self.marks_read.append(mark)
        return taken, probabilities


def takes_reader(rule, mark):
    """Whether `rule` takes the reader's reading of a recorded mark."""
    if "reader_reader" not in mark:
        return False
    if rule.startswith("replace"):
        return (mark["sureness"] >= 0.5
                and mark["reader_reader"] - mark["cut_reader"] >= float(rule.split()[1]))
    margin, weight, sureness = (float(part.lstrip("ws")) for part in rule.split()[1:])
    gain = (mark["reader_reader"] + weight * mark["reader_digits"]
            - mark["cut_reader"] - weight * mark["cut_digits"])
    return mark["sureness"] >= sureness and gain >= margin


def number_under(rule, digits, marks_read):
    """The picture's number as the rule reads it: the product's digits, each recorded mark's
    replaced by the reading the rule takes (marks not split count one digit each)."""
    digits, shift = list(digits), 0
    for mark in marks_read:
        place = mark["index"] + shift
        reading = mark["reader"] if takes_reader(rule, mark) else mark["cut"]
        digits[place:place + mark["count"]] = reading
        shift += len(reading) - 1
    return None if None in digits else "".join(map(str, digits))


def recording_answerer(recorder, reader=None):
    """(answer, splitters): classifier.picture_answerer on the shipped networks (`reader` in
    place of the shipped reader where given: strips -> logits), the splitter of each picture it
    reads a `recorder` (a touching.Splitter that records what it read), appended to
    `splitters`."""
    classify, gate = classifier.load_classifier(), classifier.load_gate()
    reader = reader or classifier.load_reader()
    splitters = []
    touching.splitter = lambda *networks: splitters.append(recorder(*networks)) or splitters[-1]
    return classifier.picture_answerer(classify, gate, reader), splitters


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--rows", nargs="+", help="only the touching renderings whose names hold "
                        "one of these (default: all four)")
    args = parser.parse_args()
    x, y = validation_digits()
    answer, splitters = recording_answerer(Recording)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["limit"] = args.limit
    rows = [n for n, (kind, _) in RENDERINGS.items() if kind == "touching"
            and (not args.rows or any(part in n for part in args.rows))]
    for name in rows:
        count, render = DIGITS_PER_FILE[name], RENDERINGS[name][1]
        right = dict.fromkeys(["the product", *RULES], 0)
        for index in range(args.limit):
            digits = [x[(index + k) % len(x)] for k in range(count)]
            want = "".join(str(int(y[(index + k) % len(y)])) for k in range(count))
            found = answer(pictures.decode_picture(encoded(*render(digits[0], index, *digits[1:]))))
            right["the product"] += found["number"] == want
            marks_read = splitters[-1].marks_read
            for rule in RULES:
                read = found.get("digits") or [found["digit"]]
                right[rule] += number_under(rule, read, marks_read) == want
        results[name] = {rule: n / args.limit for rule, n in right.items()}
        best = max(RULES, key=right.get)
        print(f"{name}: the product {right['the product'] / args.limit:.2%}, replace 2.0 "
              f"{right['replace 2.0'] / args.limit:.2%}, best {best} {right[best] / args.limit:.2%}",
              flush=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
