"""A study: which marks to try as digits that touch (touching.judge_for's third answer). Rules:
"bS", a mark the gate calls no digit whose "digits that touch" output is at least S times its
"not a digit" (b1: the rule before TOUCHING_SHARE); "t1bS", that, or a mark whose largest gate
output is "digits that touch" though the gate calls it a digit. Each rule through the product's
own steps (classifier.picture_answerer, with the shipped reader), on the touching renderings of
the first N validation digits (the study's dev set) and on NEG pictures of each of five kinds the
gate trained on, with no digit (the share answered all "not a digit"); once, for the rule chosen,
the kinds held out (--limit 0: no digits).

    python benchmarks/touching/trying.py --limit 600 --negatives 300 --rules b1 b0.5 b0.25 t1b1 t1b0.25
    python benchmarks/touching/trying.py --limit 600 --negatives 300 --rules t1b0.5 t1b0.1
    python benchmarks/touching/trying.py --limit 0 --rules b1 t1b0.25 --kinds stroke_letters doodles words

Writes results/touching_trying.json, or results/STEM.json with --save-as STEM (each rule's
figures merged into what is there).
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent), str(HERE.parent / "not_a_digit")]
from common import validation_digits  # noqa: E402
from mnist_digits import classifier, pictures, touching  # noqa: E402
from mnist_digits.touching import NUM_CLASSES, TOUCHING  # noqa: E402
from measure import encoded  # noqa: E402
from negatives import negative_pictures  # noqa: E402
from renderings import DIGITS_PER_FILE, RENDERINGS  # noqa: E402
from sequence_reader import TRAINED_KINDS  # noqa: E402

PRODUCT_JUDGE_FOR = touching.judge_for
RESULTS = HERE.parent / "results" / "touching_trying.json"


def judge_for_rule(rule):
    """touching.judge_for (the product's, its scores and no_digit as they are), trying the marks
    `rule` tries."""
    share, top = float(rule.split("b")[-1]), rule.startswith("t1")

    def judge_for(classify, gate):
        judge = PRODUCT_JUDGE_FOR(classify, gate)

        def judged(marks):
            scores, no_digit, _ = judge(marks)
            outputs = gate.network(marks[..., np.newaxis])  # remembered for the picture: not rerun
            trying = no_digit & (outputs[:, TOUCHING] >= share * outputs[:, NUM_CLASSES])
            if top:
                trying |= outputs.argmax(axis=1) == TOUCHING
            return scores, no_digit, trying
        return judged
    return judge_for


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--negatives", type=int, default=300)
    parser.add_argument("--rules", nargs="+", default=["b1", "b0.5", "b0.25", "t1b1", "t1b0.25"])
    parser.add_argument("--kinds", nargs="+", default=TRAINED_KINDS,
                        help="negatives.py's kinds (default: five the gate trained on)")
    parser.add_argument("--save-as", metavar="STEM", default=RESULTS.stem,
                        help="write results/STEM.json (default: %(default)s)")
    args = parser.parse_args()
    results_file = RESULTS.with_name(f"{args.save_as}.json")
    x, y = validation_digits()
    classify, gate, reader = (classifier.load_classifier(), classifier.load_gate(),
                              classifier.load_reader())

    def answer(rule, grey):
        touching.judge_for = judge_for_rule(rule)
        try:
            return classifier.picture_answerer(classify, gate, reader)(grey)
        finally:
            touching.judge_for = PRODUCT_JUDGE_FOR

    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    for rule in args.rules:
        results.setdefault(rule, {}).update(
            {"limit": args.limit} if args.limit else {}, negatives=args.negatives)
    for name in (n for n, (kind, _) in RENDERINGS.items() if kind == "touching" and args.limit):
        count, render = DIGITS_PER_FILE[name], RENDERINGS[name][1]
        right = dict.fromkeys(args.rules, 0)
        for index in range(args.limit):
            digits = [x[(index + k) % len(x)] for k in range(count)]
            want = "".join(str(int(y[(index + k) % len(y)])) for k in range(count))
            grey = pictures.decode_picture(encoded(*render(digits[0], index, *digits[1:])))
            for rule in args.rules:
                right[rule] += answer(rule, grey)["number"] == want
        for rule in args.rules:
            results[rule][name] = right[rule] / args.limit
        print(name, {rule: f"{n / args.limit:.2%}" for rule, n in right.items()}, flush=True)
    for kind in args.kinds:
        none = dict.fromkeys(args.rules, 0)
        for data, _, _ in negative_pictures(kind, args.negatives, 2):
            for rule in args.rules:
                try:
                    found = answer(rule, pictures.decode_picture(data))
                except ValueError:  # blank: no digit either
                    none[rule] += 1
                    continue
                none[rule] += all(d is None for d in found.get("digits", [found["digit"]]))
        for rule in args.rules:
            results[rule][kind] = none[rule] / args.negatives
        print(kind, {rule: f"{n / args.negatives:.2%}" for rule, n in none.items()}, flush=True)
    results_file.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
