"""Calibration of tgmatl.evaluation.stats.compare on simulated data sets: false positives and power.

Each simulated data set is a planted survey at the demo's size (240 samples, classes
116/51/73, 64-dim embeddings), evaluated with the protocol's units: a stratified test split
(70 %; redrawn per repeat when ``resplit``, else drawn once), stratified 8 folds over the rest,
5 repeats; in unit (r, f) the setups train on the non-test samples outside fold f (63) and are
measured on the test split (168).

Setups. A: a seeded random Gaussian projection (64 -> 32) of the embeddings, then PCA to 16
dims fitted on the unit's training samples (the "trained embedding"), then probes: a ridge
classifier on one-hot classes and a ridge regression on the planted standardised geometry, each
with its L2 picked by exact leave-one-out over the unit's training samples (closed form, the
rule of sklearn's RidgeClassifierCV / RidgeCV, which this verifies with ``--verify``; sklearn's
LogisticRegressionCV costs ~0.4 s per fit on this machine, 100x too slow for 10^5 fits).

- Null (B0): A's projection applied after a seeded random rotation of the embedding's noise
  subspace, which fixes the planted signal subspace. The survey's distribution is invariant
  under it, so B0 run on a data set is distributed as A run on one: equal expected metrics
  exactly, while the two disagree on single samples (what makes the test-sample draw matter).
- Effect (B1): as B0 on embeddings with the class signal scaled by ``1 + eps``; ``eps`` is
  calibrated so that B1 - A is about +0.03 expected accuracy, measured on large held-out data
  (``--calibrate``; the run prints the realised effect for the ``eps`` it uses).

Metrics on the test samples: accuracy, box R² (uniform over the 2 features), class MAP@R of
the 16-dim embedding (Euclidean, L2-normalised, query excluded), as per-sample terms
(tgmatl.evaluation.stats). Reported per ``resplit`` and metric: the rejection rate at alpha of each
method
under the null (goal <= 0.07) and under the effect (power), with Wilson 95 % intervals.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_calibration.py [--n-datasets 200]
        [--quick] [--jobs 2] [--calibrate] [--verify]

Measured (200 data sets, 2 jobs, 7-13 min on the shared 2-core machine; --quick ~70 s):
realised effect +0.033 accuracy (se 0.003). ``decomposed``: false positives 0.04 / 0.04 /
0.005 (accuracy / box R² / MAP@R) with resplit, 0.025 / 0.02 / 0.01 without; variance ratio
1.5-2.3; power for the +0.03 accuracy effect 0.125 (resplit) and 0.065 (fixed split), where a
z-test knowing the true variance would have 0.30 and 0.20: 240 samples leave +0.03 accuracy
below one standard error. ``naive``: 0.57-0.95 false positives. ``nadeau_bengio``: 0-0.005
with resplit (variance 2-8x too large; power 0 for accuracy), 0.39 for MAP@R without.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per worker; parallelism is over data sets

import numpy as np  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from scipy.stats import ortho_group  # noqa: E402
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit  # noqa: E402

from tgmatl.evaluation import stats  # noqa: E402
from tgmatl.planted import planted_survey  # noqa: E402

N, WEIGHTS, DIM, PROJ, PCS = 240, (116, 51, 73), 64, 32, 16
ALPHAS = np.logspace(-2, 4, 13)
METRICS = ("accuracy", "box_r2", "class_map_at_r")
METHODS = ("decomposed", "nadeau_bengio", "naive")
EPS = 0.30  # class-signal boost of B1; --calibrate re-derives it


# --- setups -----------------------------------------------------------------------------------

def ridge_loo(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray) -> tuple[np.ndarray, float]:
    """Ridge with intercept; alpha in ALPHAS by exact leave-one-out MSE (ties: smaller alpha)."""
    mx, my = x_tr.mean(axis=0), y_tr.mean(axis=0)
    u, s, vt = np.linalg.svd(x_tr - mx, full_matrices=False)
    uty = u.T @ (y_tr - my)
    n = len(x_tr)
    best = (np.inf, float(ALPHAS[0]))
    for a in ALPHAS:
        f = s**2 / (s**2 + a)
        resid = (y_tr - my) - u @ (f[:, None] * uty)
        h = (u**2) @ f + 1.0 / n  # hat diagonal, intercept included
        err = float(np.mean((resid / (1.0 - h)[:, None]) ** 2))
        if err < best[0] * (1.0 - 1e-12):
            best = (err, float(a))
    a = best[1]
    w = vt.T @ ((s / (s**2 + a))[:, None] * uty)
    return (x_te - mx) @ w + my, float(a)


def survey_setups(seed: int, eps: float, n: int = N):
    """The survey and the inputs of setups A, B0 (null), B1 (effect) for data set ``seed``."""
    kw = dict(class_weights=WEIGHTS, dim=DIM, seed=seed)
    survey = planted_survey(n, **kw)
    # the same seed without noise (and without geometry) gives the planted signal alone: the
    # noise is drawn last, so samples and directions are identical (checked)
    clean = planted_survey(n, noise=0.0, **kw)
    cls = planted_survey(n, noise=0.0, geometry_signal=0.0, **kw)
    if not (survey.samples.equals(clean.samples) and survey.samples.equals(cls.samples)):
        raise RuntimeError("planted_survey: noise-free twin differs; signal subspace unknown")
    x = survey.embeddings.astype(np.float64)
    _, sv, vt = np.linalg.svd(clean.embeddings.astype(np.float64))
    rank = int(np.sum(sv > 1e-6 * sv[0]))
    sig, noise = vt[:rank].T, vt[rank:].T
    rng = np.random.default_rng([seed, 2])
    proj = rng.standard_normal((DIM, PROJ)) / np.sqrt(DIM)
    rot = sig @ sig.T + noise @ ortho_group.rvs(DIM - rank, random_state=rng) @ noise.T
    inputs = {"A": x @ proj, "B0": x @ rot @ proj,
              "B1": (x + eps * cls.embeddings.astype(np.float64)) @ rot @ proj}
    return survey, inputs


def fit_unit(x: np.ndarray, y: np.ndarray, geo: np.ndarray, tr: np.ndarray):
    """PCA on the training samples, then the two probes; returns a predictor of all samples."""
    mu = x[tr].mean(axis=0)
    _, _, vt = np.linalg.svd(x[tr] - mu, full_matrices=False)
    z = (x - mu) @ vt[:PCS].T
    scores, _ = ridge_loo(z[tr], np.eye(int(y.max()) + 1)[y[tr]], z)
    geo_pred, _ = ridge_loo(z[tr], geo[tr], z)
    return z, scores.argmax(axis=1), geo_pred


def unit_terms(x, y, geo, tr, te) -> dict[str, np.ndarray]:
    z, pred, geo_pred = fit_unit(x, y, geo, tr)
    zt = z[te] / np.linalg.norm(z[te], axis=1, keepdims=True)
    return {"accuracy": stats.accuracy_terms(y[te], pred[te]),
            "box_r2": stats.r2_terms(geo[te], geo_pred[te]),
            "class_map_at_r": stats.map_at_r_terms(zt, y[te])}


def protocol_units(y: np.ndarray, seed: int, resplit: bool, repeats: int, folds: int,
                   test_size: float) -> list[stats.Unit]:
    seeds = np.random.SeedSequence([seed, 1]).generate_state(2 * repeats)
    out = []
    for r in range(repeats):
        if r == 0 or resplit:
            sss = StratifiedShuffleSplit(1, test_size=test_size, random_state=int(seeds[2 * r]))
            rest, test = next(sss.split(np.zeros(len(y)), y))
        skf = StratifiedKFold(folds, shuffle=True, random_state=int(seeds[2 * r + 1]))
        for tr, _ in skf.split(np.zeros(len(rest)), y[rest]):
            out.append(stats.Unit(r, test, rest[tr]))
    return out


def simulate(seed: int, eps: float, repeats: int, folds: int, test_size: float,
             alpha: float) -> list[tuple]:
    """Rows (resplit, comparison, metric, method, diff, p, se) for one data set."""
    survey, inputs = survey_setups(seed, eps)
    y = survey.samples["class_id"].to_numpy()
    geo = survey.geometry
    rows = []
    for resplit in (True, False):
        units = protocol_units(y, seed, resplit, repeats, folds, test_size)
        terms = {k: [unit_terms(x, y, geo, u.train_ids, u.test_ids) for u in units]
                 for k, x in inputs.items()}
        for comp, b in (("null", "B0"), ("effect", "B1")):
            for metric in METRICS:
                diffs = [tb[metric] - ta[metric]
                         for ta, tb in zip(terms["A"], terms[b], strict=True)]
                for method in METHODS:
                    res = stats.compare(diffs, units, alpha=alpha, method=method)
                    rows.append((resplit, comp, metric, method, res.diff, res.p_value,
                                 res.se))
    return rows


# --- realised effect on large held-out data ------------------------------------------------------

def _effect_world(w: int, eps: float, draws: int, n_big: int, n_train: int,
                  n_test: int) -> dict[str, list[float]]:
    survey, inputs = survey_setups(w, eps, n_big)
    y = survey.samples["class_id"].to_numpy()
    geo = survey.geometry
    rng = np.random.default_rng(w)
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(draws):
        tr = next(StratifiedShuffleSplit(1, train_size=n_train, random_state=int(
            rng.integers(2**31))).split(np.zeros(n_big), y))[0]
        held = np.setdiff1d(np.arange(n_big), tr)
        chunks = rng.permutation(held)[: 4 * n_test].reshape(4, n_test)
        res = {}
        for k in ("A", "B1"):
            z, pred, geo_pred = fit_unit(inputs[k], y, geo, tr)
            res[k] = (stats.accuracy_terms(y[held], pred[held]).mean(),
                      stats.r2_terms(geo[held], geo_pred[held]).mean(),
                      np.mean([stats.map_at_r_terms(
                          z[c] / np.linalg.norm(z[c], axis=1, keepdims=True), y[c]).mean()
                          for c in chunks]))
        for i, m in enumerate(METRICS):
            out[m].append(res["B1"][i] - res["A"][i])
    return out


def realised_effect(eps: float, par, n_worlds: int = 30, draws: int = 5, n_big: int = 3000,
                    seed: int = 10**6, n_train: int = 63,
                    n_test: int = 168) -> dict[str, tuple[float, float]]:
    """E[B1 - A] per metric (mean, standard error): training sets of the units' size drawn
    from large surveys (fresh directions and projections per survey, as the simulated data
    sets have; one projection alone gives a biased effect), evaluated on all held-out samples
    (MAP@R on held-out chunks of the protocol's test size, as it depends on the list size)."""
    parts = par(delayed(_effect_world)(seed + w, eps, draws, n_big, n_train, n_test)
                for w in range(n_worlds))
    vals = {m: np.concatenate([p[m] for p in parts]) for m in METRICS}
    return {m: (float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))))
            for m, v in vals.items()}


# --- report -----------------------------------------------------------------------------------

def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def report(rows: list[tuple], alpha: float) -> None:
    """Per split mode, metric and method: rejection rates under the null and the effect, the
    mean estimated variance over the true one (the null diffs' spread over data sets), and the
    power a z-test with that true variance would have (the ceiling for a calibrated test)."""
    arr = np.array(rows, dtype=object)
    z = 1.959963984540054 if alpha == 0.05 else float(__import__("scipy").stats.norm.ppf(
        1 - alpha / 2))
    print(f"\nrejection rate at alpha {alpha} [Wilson 95 %]; var ratio = mean se² / variance "
          "of the null diffs over data sets;\noracle power = z-test with that true variance; "
          "mean B - A under null / effect")
    print(f"{'resplit':8s}{'metric':16s}{'method':15s}{'false-positive':>22s}{'power':>22s}"
          f"{'var ratio':>11s}{'oracle':>8s}{'mean null / effect':>22s}")
    for resplit in (True, False):
        for metric in METRICS:
            for method in METHODS:
                sel = {c: (arr[:, 0] == resplit) & (arr[:, 1] == c) & (arr[:, 2] == metric)
                       & (arr[:, 3] == method) for c in ("null", "effect")}
                cells = []
                for comp in ("null", "effect"):
                    p = arr[sel[comp], 5].astype(float)
                    k = int(np.sum(p <= alpha))
                    lo, hi = wilson(k, len(p))
                    cells.append(f"{k / len(p):.3f} [{lo:.2f},{hi:.2f}]")
                null = arr[sel["null"], 4].astype(float)
                eff = arr[sel["effect"], 4].astype(float)
                true_var = null.var(ddof=1)
                ratio = np.mean(arr[sel["null"], 6].astype(float) ** 2) / true_var
                oracle = np.mean(np.abs(eff) / np.sqrt(true_var) > z)
                print(f"{resplit!s:8s}{metric:16s}{method:15s}{cells[0]:>22s}{cells[1]:>22s}"
                      f"{ratio:>11.2f}{oracle:>8.3f}   {null.mean():+.4f} / {eff.mean():+.4f}")


def verify() -> None:
    """ridge_loo agrees with sklearn's RidgeCV / RidgeClassifierCV (LOO over the same grid)."""
    from sklearn.linear_model import RidgeClassifierCV, RidgeCV

    survey, inputs = survey_setups(3, EPS)
    y = survey.samples["class_id"].to_numpy()
    unit = protocol_units(y, 3, True, 1, 8, 0.7)[0]
    tr = unit.train_ids
    x = inputs["A"]
    mu = x[tr].mean(axis=0)
    z = (x - mu) @ np.linalg.svd(x[tr] - mu, full_matrices=False)[2][:PCS].T
    pred, a = ridge_loo(z[tr], survey.geometry[tr], z)
    ref = RidgeCV(alphas=ALPHAS).fit(z[tr], survey.geometry[tr])
    assert np.isclose(a, ref.alpha_) and np.allclose(pred, ref.predict(z)), "RidgeCV differs"
    scores, a = ridge_loo(z[tr], 2.0 * np.eye(3)[y[tr]] - 1.0, z)
    ref_c = RidgeClassifierCV(alphas=ALPHAS).fit(z[tr], y[tr])
    assert np.isclose(a, ref_c.alpha_), "RidgeClassifierCV picks another alpha"
    assert np.array_equal(scores.argmax(axis=1), ref_c.predict(z)), "RidgeClassifierCV differs"
    print("verify: ridge_loo matches sklearn RidgeCV and RidgeClassifierCV")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-datasets", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="24 data sets, no effect re-check")
    ap.add_argument("--jobs", type=int, default=2, choices=(1, 2))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--folds", type=int, default=8)
    ap.add_argument("--test-size", type=float, default=0.7)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--eps", type=float, default=EPS, help="class-signal boost of setup B1")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--calibrate", action="store_true", help="search eps for +0.03 accuracy")
    ap.add_argument("--verify", action="store_true", help="check ridge_loo against sklearn")
    args = ap.parse_args(argv)
    if args.verify:
        verify()
    eps = args.eps
    t0 = time.time()
    n = 24 if args.quick else args.n_datasets
    rows: list[tuple] = []
    done = 0
    batch = max(2 * args.jobs, 10)
    with Parallel(n_jobs=args.jobs) as par:
        for e in (0.2, 0.25, 0.3, 0.35, 0.4) if args.calibrate else ():
            print(f"eps {e:.2f}: realised {realised_effect(e, par)}", flush=True)
        if not args.quick:
            eff = realised_effect(eps, par)
            print(f"realised effect of B1 (eps {eps}) on large held-out data: "
                  + ", ".join(f"{m} {v:+.4f} (se {se:.4f})" for m, (v, se) in eff.items())
                  + f"  [{time.time() - t0:.0f} s]", flush=True)
        print(f"{n} data sets x 2 split modes x {args.repeats * args.folds} units, "
              f"jobs {args.jobs}", flush=True)
        for start in range(0, n, batch):
            seeds = range(args.seed + start, args.seed + min(n, start + batch))
            for part in par(delayed(simulate)(s, eps, args.repeats, args.folds, args.test_size,
                                              args.alpha) for s in seeds):
                rows.extend(part)
            done += len(seeds)
            print(f"  {done}/{n} data sets, {time.time() - t0:.0f} s", flush=True)
    report(rows, args.alpha)
    print(f"\ntotal {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
