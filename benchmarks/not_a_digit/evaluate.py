"""Candidate "not a digit" deciders on the shipped network's features, measured end to end.

    python evaluate.py [--rates 0.001 0.0005] [--train-kinds font_letters scribbles digit_overlaps]
                       [--loko] [--out results/NAME]

Needs cache/feat_*.npz (build_data.py, then features.py) and, for the standalone CNN,
cache/score_cnn_*.npz (train_cnn.py). Every decider gives a score, higher = less like a digit;
a mark is "not a digit" when its score is above a threshold chosen on training/validation data
only, at a target share of digits rejected ("rate"), in two protocols:
    T: the threshold rejects `rate` of the 54,000 training digits (as the reader sees them)
    V: the threshold rejects `rate` of the 6,000 validation digits x 7 clean renderings
       (then the validation numbers are those of the set the threshold was chosen on)
Measured on: the negatives of every kind made with seed 2 (seed 1 is what the heads train on;
the held-out kinds are never trained or tuned on), MNIST's 10,000 test digits and 6,000
validation digits in the 7 clean renderings (accuracy with rejects counted wrong).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from negatives import HELD_OUT, KINDS  # noqa: E402
from common import CACHE, CLEAN, N_TRAIN, mnist  # noqa: E402

TRAIN_KINDS = ("font_letters", "scribbles", "digit_overlaps")


# --- Data ---------------------------------------------------------------------------------------

def load(name):
    return dict(np.load(CACHE / f"feat_{name}.npz"))


def load_all():
    data = {"train": load("digits_train"), "validation": load("digits_validation"),
            "test": load("digits_test"), "arrays_test": load("arrays_test"),
            "arrays_validation": load("arrays_validation")}
    for split in ("train", "validation", "test"):
        raw = np.load(CACHE / f"digits_{split}.npz")
        data[split]["labels"] = raw["labels"]
        data[split]["counts"] = raw["counts"]
    data["train"] = {k: v[0] if k in ("features", "logits", "probabilities", "counts") else v
                     for k, v in data["train"].items()}
    arrays = mnist()
    data["arrays_test"]["labels"] = arrays["y_test"]
    data["arrays_validation"]["labels"] = arrays["y_train"][N_TRAIN:]
    for kind in KINDS:
        for seed in (1, 2):
            name = f"neg_{kind}_s{seed}"
            if (CACHE / f"feat_{name}.npz").exists():
                data[name] = load(name)
                raw = np.load(CACHE / f"{name}.npz")
                data[name]["owners"] = raw["owners"]
                data[name]["pictures"] = int(raw["pictures"])
                data[name]["whats"] = raw["whats"]
    return data


# --- Deciders -----------------------------------------------------------------------------------

def logsumexp(z):
    m = z.max(-1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(-1, keepdims=True)))[..., 0]


class Score:
    """A decider without training on negatives: score(view) from the network's view."""

    def __init__(self, name, function):
        self.name, self.function = name, function

    def fit(self, data, kinds):
        return self

    def score(self, view, set_name):
        return self.function(view)


def msp(view):
    return 1 - view["probabilities"].max(-1)


def energy(view):
    return -logsumexp(view["logits"])


def max_logit(view):
    return -view["logits"].max(-1)


class Mahalanobis:
    """min over the ten digits of the squared Mahalanobis distance of the features to the
    digit's mean, with one covariance shared by the ten (Lee et al. 2018), fitted on the
    training digits as the reader sees them."""

    name = "mahalanobis"

    def fit(self, data, kinds):
        f, y = data["train"]["features"].astype(np.float64), data["train"]["labels"]
        self.means = np.stack([f[y == c].mean(0) for c in range(10)])
        centred = f - self.means[y]
        covariance = centred.T @ centred / len(f)
        self.precision = np.linalg.pinv(covariance + 1e-6 * np.eye(f.shape[1]))
        return self

    def distances(self, features):
        f = features.astype(np.float64)
        a = f @ self.precision  # (f - m) P (f - m) = f P f - 2 f P m + m P m, P symmetric
        return ((a * f).sum(-1)[..., np.newaxis] - 2 * a @ self.means.T
                + np.einsum("ci,ij,cj->c", self.means, self.precision, self.means))

    def score(self, view, set_name):
        return self.distances(view["features"]).min(-1)


def training_set(data, kinds, extra=None):
    """(x, y, weights): training digits' view (y 0) and negatives of the kinds, seed 1 (y 1),
    each side weighted to half the total. `extra(view)` -> columns added to the features."""
    def columns(view):
        x = view["features"]
        return np.concatenate([x, extra(view)], -1) if extra else x
    negs = [data[f"neg_{k}_s1"] for k in kinds]
    x = np.concatenate([columns(data["train"])] + [columns(n) for n in negs]).astype(np.float32)
    n_dig = len(data["train"]["features"])
    y = np.concatenate([np.zeros(n_dig), np.ones(len(x) - n_dig)]).astype(np.float32)
    w = np.where(y == 0, 0.5 * len(x) / n_dig, 0.5 * len(x) / (len(x) - n_dig)).astype(np.float32)
    return x, y, w


def softplus(z):
    return np.logaddexp(0, z)


class Head:
    """A small binary head on the 128 features (and optionally the logits): logistic regression
    (hidden=0) or a one-hidden-layer ReLU MLP, trained on training digits vs negatives of the
    training kinds (seed 1), balanced, by full-batch L-BFGS (SciPy) on the weighted logistic
    loss plus l2 x the squared weights; features standardised by the training set's mean and
    spread. Score: the head's logit. `layers`: [(W, b), ...] on standardised inputs."""

    def __init__(self, hidden=0, with_logits=False, l2=1e-4, seed=1, iterations=250):
        self.hidden, self.with_logits, self.l2, self.seed, self.iterations = \
            hidden, with_logits, l2, seed, iterations
        self.name = (f"MLP {hidden}" if hidden else "logistic") + (" +logits" if with_logits else "")

    def extra(self):
        return (lambda view: view["logits"]) if self.with_logits else None

    def shapes(self, d):
        if self.hidden:
            return [(d, self.hidden), (self.hidden,), (self.hidden, 1), (1,)]
        return [(d, 1), (1,)]

    def unpack(self, theta, d):
        out, i = [], 0
        for shape in self.shapes(d):
            n = int(np.prod(shape))
            out.append(theta[i:i + n].reshape(shape))
            i += n
        return [(out[j], out[j + 1]) for j in range(0, len(out), 2)]

    def forward(self, layers, x):
        hidden = []
        for W, b in layers[:-1]:
            x = np.maximum(x @ W + b, 0)
            hidden.append(x)
        W, b = layers[-1]
        return (x @ W + b)[:, 0], hidden

    def fit(self, data, kinds):
        from scipy.optimize import minimize

        x, y, w = training_set(data, kinds, self.extra())
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        x = ((x - self.mean) / self.std).astype(np.float64)
        w = w / w.sum()
        d = x.shape[1]
        rng = np.random.default_rng(self.seed)
        theta0 = np.concatenate([(rng.normal(0, np.sqrt(2 / shape[0]), shape) if len(shape) == 2
                                  else np.zeros(shape)).ravel() for shape in self.shapes(d)])

        def loss(theta):
            layers = self.unpack(theta, d)
            z, hidden = self.forward(layers, x)
            value = np.sum(w * (softplus(z) - y * z)) + self.l2 * sum((W ** 2).sum() for W, _ in layers)
            dz = w * (1 / (1 + np.exp(-z)) - y)  # d loss / d z
            grads = []
            upstream = dz[:, np.newaxis]
            inputs = [x] + hidden
            for k in range(len(layers) - 1, -1, -1):
                W, _ = layers[k]
                grads.append((inputs[k].T @ upstream + 2 * self.l2 * W, upstream.sum(0)))
                if k:
                    upstream = (upstream @ W.T) * (hidden[k - 1] > 0)
            grads = grads[::-1]
            return value, np.concatenate([g.ravel() for pair in grads for g in pair])

        result = minimize(loss, theta0, jac=True, method="L-BFGS-B",
                          options={"maxiter": self.iterations})
        self.layers = self.unpack(result.x, d)
        self.training_loss = float(result.fun)
        return self

    def score(self, view, set_name):
        x = view["features"]
        if self.with_logits:
            x = np.concatenate([x, view["logits"]], -1)
        shape = x.shape[:-1]
        flat = (x.reshape(-1, x.shape[-1]) - self.mean) / self.std
        return self.forward(self.layers, flat)[0].reshape(shape)


class Eleventh(Head):
    """An eleven-way softmax head on the 128 features (ten digits + "not a digit"), trained
    like Head (L-BFGS, balanced); score: log p(not a digit) - log sum p(digits)."""

    name = "11-way head"

    def __init__(self, l2=1e-4, iterations=250):
        self.l2, self.iterations = l2, iterations

    def fit(self, data, kinds):
        from scipy.optimize import minimize

        x, y, w = training_set(data, kinds)
        labels = np.where(y == 1, 10, np.concatenate(
            [data["train"]["labels"], np.zeros(int(y.sum()), int)])).astype(np.int64)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        x = ((x - self.mean) / self.std).astype(np.float64)
        w = w / w.sum()
        d = x.shape[1]
        onehot = np.eye(11)[labels]

        def loss(theta):
            W, b = theta[:d * 11].reshape(d, 11), theta[d * 11:]
            z = x @ W + b
            log_p = z - logsumexp(z)[:, np.newaxis]
            value = -np.sum(w * (onehot * log_p).sum(1)) + self.l2 * (W ** 2).sum()
            dz = w[:, np.newaxis] * (np.exp(log_p) - onehot)
            return value, np.concatenate([(x.T @ dz + 2 * self.l2 * W).ravel(), dz.sum(0)])

        result = minimize(loss, np.zeros(d * 11 + 11), jac=True, method="L-BFGS-B",
                          options={"maxiter": self.iterations})
        self.W, self.b = result.x[:d * 11].reshape(d, 11), result.x[d * 11:]
        return self

    def score(self, view, set_name):
        x = view["features"]
        shape = x.shape[:-1]
        z = ((x.reshape(-1, x.shape[-1]) - self.mean) / self.std) @ self.W + self.b
        return (z[:, 10] - logsumexp(z[:, :10])).reshape(shape)


class Cached:
    """Scores computed elsewhere (train_cnn.py): cache/score_<name>_<set>.npy."""

    def __init__(self, name):
        self.name = name

    def fit(self, data, kinds):
        return self

    def score(self, view, set_name):
        return np.load(CACHE / f"score_{self.name}_{set_name}.npy")


class Either:
    """Not a digit when either decider says so, each at the same target rate (the union rejects
    at most twice the rate of digits)."""

    def __init__(self, a, b):
        self.a, self.b = a, b
        self.name = f"{a.name} OR {b.name}"


# --- Measuring ----------------------------------------------------------------------------------

def scores_of(decider, data, sets):
    return {s: decider.score(data[s], s) for s in sets}


def measure(scores, thresholds, data, neg_sets):
    """Rows of one decider at thresholds (dict name -> threshold, or a pair for Either)."""
    def rejected(s):
        if isinstance(thresholds, tuple):
            return (scores[0][s] > thresholds[0]) | (scores[1][s] > thresholds[1])
        return scores[s] > thresholds
    row = {}
    for split in ("test", "validation"):
        rej = rejected(split)  # (7, N)
        pred = data[split]["probabilities"].argmax(-1)
        correct = pred == data[split]["labels"]
        arrays = data[f"arrays_{split}"]
        arrays_acc = float((arrays["probabilities"].argmax(-1) == arrays["labels"]).mean())
        row[split] = {
            "rejected": float(rej.mean()),
            "rejected_per_rendering": dict(zip(CLEAN, rej.mean(1).round(6).tolist())),
            "correct_rejected": int((rej & correct).sum()),
            "wrong_rejected": int((rej & ~correct).sum()),
            "accuracy_before": dict(zip(CLEAN, correct.mean(1).round(6).tolist())),
            "accuracy_with_rejects_wrong": dict(zip(CLEAN, (correct & ~rej).mean(1).round(6).tolist())),
            "arrays_accuracy": arrays_acc,
        }
        row[split]["min_accuracy"] = min(row[split]["accuracy_with_rejects_wrong"].values())
        row[split]["max_rejected"] = max(row[split]["rejected_per_rendering"].values())
        row[split]["max_drop"] = max(b - a for a, b in zip(
            row[split]["accuracy_with_rejects_wrong"].values(), row[split]["accuracy_before"].values()))
    row["negatives"] = {}
    for s in neg_sets:
        rej = rejected(s)
        owners = data[s]["owners"]
        row["negatives"][s] = {"marks": int(len(rej)), "rejected": float(rej.mean()),
                               "pictures_all_marks_rejected": float(np.mean(
                                   [rej[owners == o].all() for o in np.unique(owners)]))}
    return row


def fitted_path(name, train_kinds):
    """Where a decider of this name fitted on these kinds is kept (cache/fitted/)."""
    slug = f"{name}__{'+'.join(sorted(train_kinds))}".replace(" ", "_")
    return CACHE / "fitted" / f"{slug}.pkl"


def load_fitted(path):
    """(decider, its scores on the sets) as `fitted` kept them."""
    import pickle

    class Unpickler(pickle.Unpickler):  # classes pickled by a run of this file as __main__
        def find_class(self, module, name):
            return super().find_class("evaluate" if module == "__main__" else module, name)
    with open(path, "rb") as file:
        return Unpickler(file).load()


def fitted(decider, data, train_kinds, sets):
    """(decider fitted on the training kinds, its scores on the sets), kept in
    cache/fitted/ so that a second run (or export.py) does not fit it again."""
    import pickle

    path = fitted_path(decider.name, train_kinds)
    if path.exists():
        return load_fitted(path)
    decider.fit(data, train_kinds)
    scores = scores_of(decider, data, sets)
    path.parent.mkdir(exist_ok=True)
    with open(path, "wb") as file:
        pickle.dump((decider, scores), file)
    return decider, scores


def run(deciders, data, rates, train_kinds, held_out):
    neg_sets = [f"neg_{k}_s2" for k in KINDS if f"neg_{k}_s2" in data]
    sets = ["train", "validation", "test"] + neg_sets
    results = []
    cache = {}
    for decider in deciders:
        started = time.time()
        if isinstance(decider, Either):
            a, b = (cache[d.name] for d in (decider.a, decider.b))
            for rate in rates:
                for protocol, ref in (("T", "train"), ("V", "validation")):
                    t = tuple(np.quantile(s[ref], 1 - rate) for s in (a, b))
                    results.append({"decider": decider.name, "protocol": protocol, "rate": rate,
                                    **measure((a, b), t, data, neg_sets)})
            continue
        decider, scores = fitted(decider, data, train_kinds, sets)
        cache[decider.name] = scores
        for rate in rates:
            for protocol, ref in (("T", "train"), ("V", "validation")):
                t = float(np.quantile(scores[ref], 1 - rate))
                results.append({"decider": decider.name, "protocol": protocol, "rate": rate,
                                "threshold": t, **measure(scores, t, data, neg_sets)})
        print(f"{decider.name}: {time.time() - started:.0f} s", flush=True)
    return results, cache


def table(results, train_kinds, held_out):
    short = {"font_letters": "font", "stroke_letters": "strokes", "doodles": "doodles",
             "scribbles": "scribbles", "digit_overlaps": "overlaps", "digit_pieces": "pieces",
             "words": "words"}
    kinds = [k for k in KINDS if f"neg_{k}_s2" in results[0]["negatives"]]
    held = [k for k in held_out if k in kinds]
    head = ["decider", "thr. on", "rate"] + [f"**{short[k]}**" for k in held] + \
        ["held-out mean"] + [short[k] + ("" if k in train_kinds else " (not trained)")
                             for k in kinds if k not in held] + \
        ["test rej. (max rendering)", "test correct rej.", "test min acc.", "val rej. (max)",
         "val min acc.", "max acc. drop test/val"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        neg = {k: r["negatives"][f"neg_{k}_s2"]["rejected"] for k in kinds}
        cells = [r["decider"], {"T": "train", "V": "val"}[r["protocol"]], f"{r['rate']:.2%}"]
        cells += [f"**{neg[k]:.1%}**" for k in held] + [f"{np.mean([neg[k] for k in held]):.1%}"]
        cells += [f"{neg[k]:.1%}" for k in kinds if k not in held]
        t, v = r["test"], r["validation"]
        cells += [f"{t['rejected']:.2%} ({t['max_rejected']:.2%})", str(t["correct_rejected"]),
                  f"{t['min_accuracy']:.2%}", f"{v['rejected']:.2%} ({v['max_rejected']:.2%})",
                  f"{v['min_accuracy']:.2%}",
                  f"{100 * t['max_drop']:.2f} / {100 * v['max_drop']:.2f} pt"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def default_deciders():
    deciders = [Score("max softmax", msp), Score("energy", energy), Score("max logit", max_logit),
                Mahalanobis(), Head(0), Head(32), Eleventh()]
    if (CACHE / "score_cnn_test.npy").exists():
        deciders.append(Cached("cnn"))
    return deciders


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", type=float, nargs="+", default=[0.001, 0.0005])
    parser.add_argument("--train-kinds", nargs="+", default=list(TRAIN_KINDS))
    parser.add_argument("--held-out", nargs="+", default=list(HELD_OUT))
    parser.add_argument("--deciders", nargs="+", help="names to keep (default: all)")
    parser.add_argument("--either", nargs=2, action="append", default=[], metavar=("A", "B"),
                        help="also A OR B (decider names)")
    parser.add_argument("--out", default="results/deciders")
    args = parser.parse_args()
    data = load_all()
    deciders = default_deciders()
    if args.deciders:
        deciders = [d for d in deciders if d.name in args.deciders]
    by_name = {d.name: d for d in deciders}
    deciders += [Either(by_name[a], by_name[b]) for a, b in args.either]
    results, _ = run(deciders, data, args.rates, args.train_kinds, args.held_out)
    out = HERE / args.out
    out.parent.mkdir(exist_ok=True)
    command = "python evaluate.py " + " ".join(sys.argv[1:])
    out.with_suffix(".json").write_text(json.dumps({"command": command, "train_kinds": args.train_kinds,
                                                    "held_out": args.held_out, "results": results},
                                                   indent=1))
    md = f"Command: `{command}`. Trained on (seed 1): {', '.join(args.train_kinds)}. " \
         f"Held out (bold): {', '.join(args.held_out)}.\n\n" + table(results, args.train_kinds,
                                                                     args.held_out)
    out.with_suffix(".md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
