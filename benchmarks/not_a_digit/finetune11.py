"""Experiment: the shipped network fine-tuned with an eleventh class, "not a digit" (outlier
exposure), on the training digits as the reader sees them (+ the arrays) and the negatives of the
training kinds (seed 1). Measured: arrays' test accuracy, digits as clean pictures (rejects
counted wrong), and the seed-2 negatives of every kind (held out: stroke_letters, doodles, words).

    python finetune11.py [--epochs 2] [--lr 1e-4] [--kinds font_letters scribbles digit_overlaps]
    python finetune11.py --from-scratch --epochs 4 --lr 1e-3 --threads 1 --marks-only --name oe4
                                      # the default network untrained: outlier exposure from the start
"""
import argparse, os, sys, time, json
import numpy as np
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from negatives import KINDS
from common import CACHE, MODEL, mnist
def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--kinds", nargs="+", default=["font_letters", "scribbles", "digit_overlaps"])
    p.add_argument("--neg-weight", type=float, default=1.0)
    p.add_argument("--name", default="ft11")
    p.add_argument("--from-scratch", action="store_true",
                   help="the default network untrained (outlier exposure from the start), not the shipped one")
    p.add_argument("--marks-only", action="store_true", help="train on the digits' marks, not also their arrays")
    p.add_argument("--threads", type=int, default=0, help="TensorFlow's threads (0: all cores)")
    args = p.parse_args()
    import keras
    import tensorflow as tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(1)
    if args.from_scratch:
        import mnist_digit_recognition as mdr
        model = mdr.build_model()
    else:
        model = keras.models.load_model(MODEL)
    flatten = next(l for l in model.layers if type(l).__name__ == "Flatten")
    old = model.get_layer("probabilities")
    W, b = old.get_weights()
    x = flatten.output
    for layer in model.layers[model.layers.index(flatten) + 1:]:
        if layer is old:
            break
        x = layer(x)
    head = keras.layers.Dense(11, activation="softmax", name="eleven")
    out = head(x)
    net = keras.Model(model.inputs, out)
    if not args.from_scratch:
        head.set_weights([np.concatenate([W, np.zeros((W.shape[0], 1))], 1), np.concatenate([b, [-2.0]])])
    mn = mnist()
    digits = np.load(f"{CACHE}/digits_train.npz")["marks"][0]
    dl = mn["y_train"][:54000]
    if not args.marks_only:  # and the arrays themselves
        digits = np.concatenate([digits, mn["x_train"][:54000].astype(np.float32) / 255])
        dl = np.concatenate([dl, dl])
    negs = np.concatenate([np.load(f"{CACHE}/neg_{k}_s1.npz")["marks"] for k in args.kinds])
    xs = np.concatenate([digits, negs])[..., None].astype(np.float32)
    ys = np.concatenate([dl, np.full(len(negs), 10)])
    w = np.where(ys == 10, args.neg_weight * len(digits) / len(negs) / 4, 1.0).astype(np.float32)
    net.compile(keras.optimizers.Adam(args.lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.time()
    net.fit(xs, ys, sample_weight=w, batch_size=64, epochs=args.epochs, shuffle=True, verbose=2)
    print(f"fine-tuned in {time.time()-t0:.0f} s", flush=True)
    net.save(f"{CACHE}/{args.name}.keras")
    measure(net, args.name, vars(args))


def measure(net, name, settings):
    """The eleven-output network on the arrays (test, validation), on the digits as clean
    pictures (rejects counted wrong) and on the seed-2 negatives of every kind, at three
    thresholds set on the validation digits; printed and written to results/NAME.json."""
    mn = mnist()
    def pr(m):
        return net.predict(m.reshape(-1, 28, 28, 1).astype(np.float32), batch_size=1000, verbose=0)
    res = {}
    pa = pr(mn["x_test"].astype(np.float32) / 255)
    res["arrays_test_acc"] = float((pa[:, :10].argmax(1) == mn["y_test"]).mean())
    pv = pr(mn["x_train"][54000:].astype(np.float32) / 255)
    res["arrays_val_acc"] = float((pv[:, :10].argmax(1) == mn["y_train"][54000:]).mean())
    sets = {}
    for split in ("test", "validation"):
        d = np.load(f"{CACHE}/digits_{split}.npz")
        sets[split] = (pr(d["marks"]).reshape(7, -1, 11), d["labels"])
    negp = {k: pr(np.load(f"{CACHE}/neg_{k}_s2.npz")["marks"]) for k in KINDS}
    score = lambda q: q[..., 10]  # p(not a digit)
    for rate in (0.001, 0.0015, 0.002):
        t = np.quantile(score(sets["validation"][0]), 1 - rate)
        row = {}
        for split, (q, lab) in sets.items():
            rej = score(q) > t
            corr = q[..., :10].argmax(-1) == lab
            row[split] = {"rejected": float(rej.mean()), "max_rendering": float(rej.mean(1).max()),
                          "min_acc": float((corr & ~rej).mean(1).min()), "acc_before": float(corr.mean(1).min())}
        row["neg"] = {k: float((score(v) > t).mean()) for k, v in negp.items()}
        res[str(rate)] = row
        print(f"rate {rate}: t={t:.4f} test rej {row['test']['rejected']:.3%} (max {row['test']['max_rendering']:.3%}) min acc {row['test']['min_acc']:.2%} (before {row['test']['acc_before']:.2%}); "
              f"val rej {row['validation']['rejected']:.3%} min acc {row['validation']['min_acc']:.2%}; "
              + ", ".join(f"{k} {v:.1%}" for k, v in row["neg"].items()), flush=True)
    print(f"arrays test {res['arrays_test_acc']:.2%}, validation {res['arrays_val_acc']:.2%}")
    json.dump({"args": settings, **res}, open(CACHE.parent / "results" / f"{name}.json", "w"), indent=1)
    return res


if __name__ == "__main__":
    main()
