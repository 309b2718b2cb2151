"""Task heads on demo-sized folds: the probes (tgmatl.training.heads) vs scikit-learn's defaults vs
the
paper's Adam-trained heads, test accuracy, R² and seconds per fit.

Data: planted surveys (:func:`tgmatl.planted.planted_survey`, 240 samples, 116/51/73, 64-d by
default) split like the demo: 70 % stratified test (168), the rest in 8 folds; fold ``f``
trains on the other 7 folds (63 samples) and validates on fold ``f`` (9). Targets: the class
and the min-max normalised (area, squareness) of the box, as in the pipeline.

Heads (``params.yaml`` heads.* for the grid, inner folds and the mlp settings):

- **probe**: :class:`~tgmatl.training.heads.ProbeClassifier` /
  :class:`~tgmatl.training.heads.ProbeRegressor` on
  the 63 training samples (the validation samples unused).
- **probe +val**: the same on training + validation samples (72): a probe needs no early
  stopping, so it may learn from the fold's validation samples too.
- **probe acc-CV**: the probe classifier with inner CV scored by accuracy instead of log-loss
  (same grid, folds and solver): the scoring choice, measured.
- **sklearn**: ``LogisticRegressionCV`` / ``RidgeCV`` with their defaults (Cs 1e-4..1e4, 5-fold
  accuracy; alphas 0.1, 1, 10 by leave-one-out) on the same standardised training samples.
- **mlp**: the pipeline's ``heads.kind: mlp`` heads, :func:`tgmatl.training.folds.mlp_heads`
  itself (``heads.hidden``, ``lr``, ``batch_size``, ``epochs``, ``patience``) on the unit
  (0, fold), early-stopped on the 9 validation samples; each head's compiled fit is timed. Both
  heads are traced once before timing (the pipeline reuses one trace for every unit).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_heads.py [--seeds 3] [--folds 4] [--dim 64]
    PYTHONPATH=src .venv/bin/python benchmarks/bench_heads.py --quick   # 1 survey x 2 folds
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections import Counter, defaultdict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegressionCV, RidgeCV  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from tgmatl.config import HeadsParams  # noqa: E402
from tgmatl.method.geometry import MinMax, box_features  # noqa: E402
from tgmatl.params import load_params, read_section  # noqa: E402
from tgmatl.planted import planted_survey  # noqa: E402
from tgmatl.training.heads import MAX_ITER, ProbeClassifier, ProbeRegressor  # noqa: E402

N_FOLDS = 8


def demo_split(seed: int, dim: int):
    """(x, class_id, features, fold) of a demo-sized planted survey; fold -1 marks test."""
    s = planted_survey(240, dim=dim, seed=seed)
    y = s.samples["class_id"].to_numpy()
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        test[rng.choice(members, int(round(0.7 * len(members))), replace=False)] = True
    fold = np.full(len(y), -1)
    pool = rng.permutation(np.flatnonzero(~test))
    fold[pool] = np.arange(len(pool)) % N_FOLDS
    raw = box_features(s.samples, ["area", "squareness"])
    return s.embeddings, y, MinMax.fit(raw[~test]).transform(raw).astype(np.float32), fold


def timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


class Mlp:
    """The pipeline's ``heads.kind: mlp`` heads (:func:`tgmatl.training.folds.mlp_heads`) with
    each head's compiled fit timed (its models are named ``classifier`` / ``regressor``)."""

    def __init__(self, n_classes: int, h: HeadsParams):
        from tgmatl.training import CompiledFit

        self.h, self.n_classes = h, n_classes
        self.seconds: dict[str, float] = {}
        plain = CompiledFit.fit

        def timed_fit(fit, *a, **k):
            out, self.seconds[fit.model.name] = timed(plain, fit, *a, **k)
            return out

        CompiledFit.fit = timed_fit  # this process fits no other CompiledFit

    def fit_predict(self, x, y, f, fold, k: int, seed: int):
        """``(class_pred, feature_pred, s classifier fit, s regressor fit)`` on the test
        samples of unit (0, ``k``)."""
        from tgmatl.training import FoldTable
        from tgmatl.training.folds import mlp_heads

        role = np.where(fold < 0, "test", np.where(fold == k, "val", "train"))
        box = np.zeros(len(y), np.int64)  # unused by the heads
        t = FoldTable(role, y, box, f, np.zeros(len(y)))
        run = mlp_heads(x, t, role == "train", role == "val", role == "test", self.h,
                        self.n_classes, seed, (0, k))
        return (run.class_pred, run.feature_pred, self.seconds["classifier"],
                self.seconds["regressor"])


def accuracy_scored_probe(x, y, h: HeadsParams, seed: int) -> LogisticRegressionCV:
    """The probe classifier's inner CV scored by accuracy (standardised input)."""
    cv = LogisticRegressionCV(
        Cs=sorted(1.0 / np.asarray(h.l2_grid)), l1_ratios=(0.0,), scoring="accuracy",
        cv=StratifiedKFold(h.inner_folds, shuffle=True, random_state=seed), solver="newton-cg",
        max_iter=MAX_ITER, use_legacy_attributes=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cv.fit(x, y)


def evaluate_fold(x, y, f, fold, k: int, seed: int, h: HeadsParams, mlp: Mlp | None):
    """Every head on fold ``k``: ``{name: (test accuracy, test R² or None, s/classifier fit,
    s/regressor fit or None)}`` and the probes' choices."""
    te = fold < 0
    tr, va = (fold >= 0) & (fold != k), fold == k
    grid = tuple(h.l2_grid)
    out, chosen = {}, {}

    def score(pred, feats):
        return (float((pred == y[te]).mean()),
                None if feats is None else float(r2_score(f[te], feats)))

    for name, rows in (("probe", tr), ("probe +val", tr | va)):
        clf, tc = timed(ProbeClassifier(grid, h.inner_folds, seed).fit, x[rows], y[rows])
        reg, trs = timed(ProbeRegressor(grid).fit, x[rows], f[rows])
        out[name] = (*score(clf.predict(x[te]), reg.predict(x[te])), tc, trs)
        if name == "probe":
            chosen = {"cls": clf.l2_, "reg": reg.l2_, "fallback": clf.fallback_}

    sc = StandardScaler().fit(x[tr].astype(np.float64))
    z, zt = sc.transform(x[tr].astype(np.float64)), sc.transform(x[te].astype(np.float64))
    m, tc = timed(accuracy_scored_probe, z, y[tr], h, seed)
    chosen["acc_cv"] = float(grid[int(np.argmin(np.abs(np.log(np.asarray(grid) * m.C_))))])
    out["probe acc-CV"] = (*score(m.predict(zt), None), tc, None)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the default lbfgs stops at 100 iterations
        ref, tc = timed(LogisticRegressionCV(l1_ratios=(0.0,), scoring="accuracy",
                                             use_legacy_attributes=False).fit, z, y[tr])
    rref, trs = timed(RidgeCV().fit, z, f[tr])
    out["sklearn"] = (*score(ref.predict(zt), rref.predict(zt)), tc, trs)

    if mlp is not None:
        pred, feats, tc, trs = mlp.fit_predict(x, y, f, fold, k, seed)
        out["mlp"] = (*score(pred, feats), tc, trs)
    return out, chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", type=int, default=3, help="planted surveys (and split seeds)")
    ap.add_argument("--folds", type=int, default=4, help="folds of the 8 used per survey")
    ap.add_argument("--dim", type=int, default=64, help="embedding width")
    ap.add_argument("--no-mlp", action="store_true", help="skip the Keras heads")
    ap.add_argument("--quick", action="store_true", help="1 survey x 2 folds (under a minute)")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.folds = 1, 2
    h = read_section(HeadsParams, load_params(args.params), "heads")

    mlp, trace_s = None, None
    if not args.no_mlp:
        from tgmatl.training import set_determinism

        set_determinism(0)
        mlp = Mlp(3, h)
    rows: dict[str, list[tuple]] = defaultdict(list)
    chosen: dict[str, Counter] = defaultdict(Counter)
    start = time.perf_counter()
    for seed in range(args.seeds):
        x, y, f, fold = demo_split(seed, args.dim)
        if mlp is not None and trace_s is None:  # trace both loops once, untimed per fit
            trace_s = timed(mlp.fit_predict, x, y, f, fold, 0, seed)[1]
        for k in range(args.folds):
            out, ch = evaluate_fold(x, y, f, fold, k, seed, h, mlp)
            for name, r in out.items():
                rows[name].append(r)
            for key, v in ch.items():
                chosen[key][v] += 1
    total = time.perf_counter() - start

    def col(name, i):
        return [np.nan if r[i] is None else r[i] for r in rows[name]]

    n = len(rows["probe"])
    print(f"{n} demo folds ({args.seeds} planted surveys x {args.folds} folds; 63 train, 9 val, "
          f"168 test; {args.dim}-d); heads.l2_grid {list(h.l2_grid)}, inner_folds "
          f"{h.inner_folds}; mlp: hidden {h.hidden}, lr {h.lr}, batch {h.batch_size}, "
          f"epochs {h.epochs}, patience {h.patience}")
    print()
    print("| head | test accuracy | test R² | s / classifier fit | s / regressor fit |")
    print("|---|---|---|---|---|")
    for name in rows:
        print(f"| {name} | {_ms(col(name, 0))} | {_ms(col(name, 1))} | "
              f"{_ms(col(name, 2), 2)} | {_ms(col(name, 3), 3)} |")
    print()
    for name in rows:
        if name != "probe":  # paired per fold; a classifier-only variant has no R²
            d_acc = np.subtract(col("probe", 0), col(name, 0))
            d_r2 = np.subtract(col("probe", 1), col(name, 1))
            print(f"probe - {name}: accuracy {_ms(d_acc)}, R² {_ms(d_r2)}")
    print(f"chosen l2, classifier (log-loss CV): {_counts(chosen['cls'])}")
    print(f"chosen l2, classifier (accuracy CV): {_counts(chosen['acc_cv'])}")
    print(f"chosen l2, regressor (leave-one-out): {_counts(chosen['reg'])}")
    print(f"inner-fold fallbacks: {n - chosen['fallback'][None]} of {n}")
    if trace_s is not None:
        print(f"mlp tracing + first fit (once a process, both heads): {trace_s:.1f} s")
    print(f"wall time: {total:.0f} s")


def _ms(v, digits: int = 3) -> str:
    v = [float(a) for a in v if np.isfinite(a)]
    if not v:
        return "–"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.fmean(v):.{digits}f} ± {sd:.{digits}f}"


def _counts(c: Counter) -> str:
    return ", ".join(f"{k:g}: {c[k]}" for k in sorted(c))


if __name__ == "__main__":
    main()
