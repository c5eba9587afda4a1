"""Quick experiment: the head trained on digits the network never trained on (validation half A),
threshold on validation half B, measured on test digits and seed-2 negatives."""
import sys, numpy as np
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
import evaluate as ev
from negatives import KINDS

def main():
    data = ev.load_all()
    val = data["validation"]  # features (7, 6000, 128)
    n = val["features"].shape[1]
    A, B = np.arange(n) < n // 2, np.arange(n) >= n // 2
    def take(view, mask):
        return {k: (v[:, mask].reshape(-1, *v.shape[2:]) if k in ("features", "logits", "probabilities") else v)
                for k, v in view.items() if k in ("features", "logits", "probabilities")}
    trainA = take(val, A)
    trainA["labels"] = np.tile(val["labels"][A], 7)
    mix = sys.argv[1] if len(sys.argv) > 1 else "valA"
    d2 = dict(data)
    if mix == "valA":
        d2["train"] = trainA
    elif mix == "both":
        d2["train"] = {k: np.concatenate([data["train"][k], trainA[k]]) for k in ("features", "logits", "probabilities", "labels")}
    kinds = sys.argv[2].split(",") if len(sys.argv) > 2 else list(ev.TRAIN_KINDS)
    held = [k for k in ev.HELD_OUT if k not in kinds]
    for hidden, l2, logits in [(32, 1e-4, False), (64, 1e-3, True), (128, 1e-3, True)]:
        h = ev.Head(hidden, with_logits=logits, l2=l2, iterations=400).fit(d2, kinds)
        sB = h.score({k: v[:, B] for k, v in val.items() if k in ("features", "logits")}, "v")
        st = h.score(data["test"], "test")
        for rate in (0.001, 0.0015, 0.002):
            t = np.quantile(sB, 1 - rate)
            rej = st > t
            pred = data["test"]["probabilities"].argmax(-1); corr = pred == data["test"]["labels"]
            acc = (corr & ~rej).mean(1).min()
            negs = {k: float((h.score(data[f"neg_{k}_s2"], k) > t).mean()) for k in KINDS}
            print(f"{mix} kinds={'+'.join(kinds)} MLP{hidden} l2={l2} logits={logits} rate={rate}: test rej {rej.mean():.3%} (max {rej.mean(1).max():.3%}), min acc {acc:.2%}; held-out "
                  + ", ".join(f"{k} {negs[k]:.1%}" for k in held) + " | trained " + ", ".join(f"{k} {negs[k]:.1%}" for k in KINDS if k not in held), flush=True)


if __name__ == "__main__":
    main()
