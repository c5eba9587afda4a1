"""A twelve-output network (touch_recipe.py's) as benchmarks/not_a_digit.py measures the shipped
gate, on the study's cached marks: the share of each kind's seed-2 negatives called "not a
digit" (its last two outputs together above the threshold at RATE of the validation digits'
marks), the share of the test and validation digits' marks (seven clean renderings) called so,
and the worst rendering's accuracy with those counted wrong (the shipped model reading).

    python benchmarks/touching/gate_marks.py benchmarks/not_a_digit/cache/touch12_s1

Prints a table; writes benchmarks/results/touching_gate_marks_NAME.json.
"""

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE), str(HERE.parent / "not_a_digit")]
from common import CACHE, MODEL  # noqa: E402
from measure import touching_gate  # noqa: E402
from negatives import HELD_OUT, KINDS  # noqa: E402
from mnist_digits.classifier import load_classifier  # noqa: E402


def main():
    folder = Path(sys.argv[1])
    gate, classify = touching_gate(folder), load_classifier(MODEL.parent)
    results = {"network": str(folder), "threshold": gate.threshold, "negatives": {}, "digits": {}}
    for kind in sorted(KINDS, key=lambda kind: kind not in HELD_OUT):
        marks = np.load(CACHE / f"neg_{kind}_s2.npz")["marks"][..., np.newaxis]
        results["negatives"][kind] = float(gate(marks).mean())
        print(f"{kind}{' (held out)' if kind in HELD_OUT else ''}: "
              f"{results['negatives'][kind]:.1%} of {len(marks)} marks", flush=True)
    for split in ("test", "validation"):
        digits = np.load(CACHE / f"digits_{split}.npz")
        marks, labels = digits["marks"], digits["labels"]
        rejected = np.stack([gate(m[..., np.newaxis]) for m in marks])
        right = np.stack([classify(m[..., np.newaxis]).argmax(axis=1) == labels for m in marks])
        results["digits"][split] = {"not_a_digit": float(rejected.mean()),
                                    "worst_rendering": float((right & ~rejected).mean(axis=1).min())}
        print(split, results["digits"][split], flush=True)
    out = HERE.parent / "results" / f"touching_gate_marks_{folder.name}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
