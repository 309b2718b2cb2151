"""Training speed: the project's compiled loop vs a loop in the authors' style, side by side.

Same data for both: the demo embeddings, split, scores and masks when ``data/`` holds them (run
the pipeline first), else a synthetic stand-in (240 samples, AWIR's class counts, 64-d, 70 %
test, 8 folds). Same params (``params.yaml``: train.*, heads.*, sampling.*, seed).

- **ours**: :func:`tgmatl.training.train_setup` for every backbone × setup, in one process: a
  whole training run per fold in one ``tf.function`` call (class-balanced batches, early stopping
  with ``train.patience``, ``train.epochs`` a ceiling), then the two task heads and the test
  metrics. Measured in full: every projection fit (first calls include tracing) and the whole
  Table II wall time.
- **authors' style**: a fresh Keras model per fold, ``compile(Adam)``, ``fit`` with batch 32 for
  ``train.epochs`` epochs (fixed), validation data and a ``ModelCheckpoint`` on ``val_loss``
  (best weights only, to a temp dir), then the best checkpoint loaded. Its projection gets our
  task heads, so the test metrics compare projections. Measured on ``--measure`` folds per
  backbone × trained setup; protocol totals are extrapolated from the measured seconds per fit
  (the output says so). Its heads (Keras fit, ``heads.epochs`` fixed, checkpoint) are measured
  on the first backbone's CLTL folds and extrapolated to every fold model.

Seconds per epoch: ours from the measured folds re-run with early stopping off
(``patience = epochs``), projection fit time / epochs; the authors' from ``fit`` time / epochs.

    .venv/bin/python benchmarks/bench_training.py [--measure 1] [--params params.yaml]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from tgmatl.config import EmbedParams, HeadsParams, SamplingParams, TrainParams  # noqa: E402
from tgmatl.params import load_params, read_section, read_seed  # noqa: E402
from tgmatl.training import (  # noqa: E402
    TRAINED_SETUPS,
    FoldTable,
    SetupInputs,
    SetupTrainer,
    fold_roles,
    load_inputs,
    train_setup,
)

METRICS = ("accuracy", "r2", "class_map_at_r", "box_map_at_r")


def synthetic_inputs(seed: int, dim: int = 64, folds: int = 8) -> SetupInputs:
    """240 samples (116 / 51 / 73), classes and box features partly visible in the embedding."""
    rng = np.random.default_rng(seed)
    cls = np.repeat([0, 1, 2], [116, 51, 73])
    n = len(cls)
    feat = rng.uniform(size=(n, 2)).astype(np.float32)
    x = rng.normal(size=(3, dim))[cls] * 0.7 + rng.normal(size=(n, dim))
    x[:, :4] += 2.0 * np.repeat(feat, 2, axis=1)
    test = np.zeros(n, bool)
    test[rng.permutation(n)[: int(0.7 * n)]] = True
    fold = np.full(n, -1)
    fold[~test] = rng.permutation((~test).sum()) % folds
    box = np.digitize(feat[:, 0], [1 / 3, 2 / 3])
    score = feat @ np.array([0.3, 0.1])
    tables = {}
    from tgmatl.selection import select_mask

    for f in range(folds):
        tr = ~test & (fold != f)
        mask = np.zeros(n, bool)
        mask[tr] = select_mask(score[tr], cls[tr], 0.1, 0.1, seed=f)
        tables[f] = FoldTable(cls, box, feat, score, mask)
    ids = np.array([f"s{i:05d}" for i in range(n)], dtype=object)
    return SetupInputs(ids, x.astype(np.float32), test, fold, ["cow", "deer", "horse"],
                       ["area", "squareness"], tables)


def demo_inputs(backbones) -> dict[str, SetupInputs] | None:
    data = Path("data")
    files = [data / "split.parquet", data / "scores.parquet", data / "masks.parquet",
             *(data / "embeddings" / f"{b}.parquet" for b in backbones)]
    if not all(f.is_file() for f in files):
        return None
    return {b: load_inputs(data / "embeddings" / f"{b}.parquet", data / "split.parquet",
                           data / "scores.parquet", masks=data / "masks.parquet",
                           samples=data / "samples" / "samples.parquet")
            for b in backbones}


def authors_style_fold(inputs: SetupInputs, setup: str, f: int, train: TrainParams,
                       sampling: SamplingParams, seed: int, tmp: Path):
    """Keras fit, fixed epochs, ModelCheckpoint on val_loss; returns (z for all samples, s)."""
    import keras

    from tgmatl import models
    from tgmatl.losses import loss_for_setup, pack_targets

    t = inputs.folds[f]
    tr, va, _ = fold_roles(inputs, f)
    keras.utils.set_random_seed(seed + f)
    model = models.projection_head(inputs.x.shape[1], train.projection)
    model.compile(optimizer=keras.optimizers.Adam(train.lr),
                  loss=loss_for_setup(setup, train, sampling if setup == "tg_matl" else None))
    mask = t.mask if setup == "tg_matl" else None
    y_tr = pack_targets(t.class_id[tr], t.box_label[tr], None if mask is None else mask[tr])
    y_va = pack_targets(t.class_id[va], t.box_label[va])  # all validation triplets
    best = tmp / f"{setup}_{f}.weights.h5"
    ckpt = keras.callbacks.ModelCheckpoint(str(best), monitor="val_loss", save_best_only=True,
                                           save_weights_only=True)
    start = time.perf_counter()
    model.fit(inputs.x[tr], y_tr, batch_size=32, epochs=train.epochs, shuffle=True,
              validation_data=(inputs.x[va], y_va), callbacks=[ckpt], verbose=0)
    seconds = time.perf_counter() - start
    model.load_weights(str(best))
    return np.asarray(model.predict(inputs.x, verbose=0)), seconds


def authors_style_head(inputs: SetupInputs, f: int, z: np.ndarray, kind: str,
                       heads: HeadsParams, tmp: Path) -> float:
    """Seconds of one task head in the authors' style (Keras fit, fixed heads.epochs, batch 32,
    ModelCheckpoint on val_loss)."""
    import keras

    t = inputs.folds[f]
    tr, va, _ = fold_roles(inputs, f)
    if kind == "classifier":
        out, loss = len(inputs.class_names), "sparse_categorical_crossentropy"
        y, act = t.class_id, "softmax"
    else:
        out, loss, y, act = len(inputs.feature_names), "mse", t.features, None
    model = keras.Sequential([keras.Input((z.shape[1],)), keras.layers.Dense(out, activation=act)])
    model.compile(optimizer=keras.optimizers.Adam(heads.lr), loss=loss)
    ckpt = keras.callbacks.ModelCheckpoint(str(tmp / f"{kind}.weights.h5"), monitor="val_loss",
                                           save_best_only=True, save_weights_only=True)
    start = time.perf_counter()
    model.fit(z[tr], y[tr], batch_size=32, epochs=heads.epochs, validation_data=(z[va], y[va]),
              callbacks=[ckpt], verbose=0)
    return time.perf_counter() - start


def main() -> None:
    from tgmatl.config import SETUPS
    from tgmatl.training import CompiledFit

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--measure", type=int, default=1,
                    help="folds per backbone x setup run in the authors' style")
    args = ap.parse_args()
    params = load_params(args.params)
    train = read_section(TrainParams, params, "train")
    heads = read_section(HeadsParams, params, "heads")
    sampling = read_section(SamplingParams, params, "sampling")
    seed = read_seed(params)
    backbones = list(read_section(EmbedParams, params, "embed").backbones)
    data = demo_inputs(backbones)
    source = "demo embeddings (data/)"
    if data is None:
        source = "synthetic 240 x 64 (no demo embeddings in data/)"
        data = {b: synthetic_inputs(seed + i) for i, b in enumerate(backbones)}
    n_folds = next(iter(data.values())).n_folds
    dims = sorted({d.x.shape[1] for d in data.values()})
    print(f"data: {source}; dims {dims}; {len(backbones)} backbones x {len(TRAINED_SETUPS)} "
          f"trained setups x {n_folds} folds; train.epochs {train.epochs}, patience "
          f"{train.patience}; heads.epochs {heads.epochs}, patience {heads.patience}")

    # every CompiledFit.fit call timed (first calls include tracing and graph optimisation)
    fit_log: list[tuple[str, float, int]] = []
    plain_fit = CompiledFit.fit

    def timed_fit(self, *a, **k):
        start = time.perf_counter()
        result = plain_fit(self, *a, **k)
        fit_log.append((self.model.name, time.perf_counter() - start, result.epochs))
        return result

    CompiledFit.fit = timed_fit

    # ours: the whole Table II (5 setups: WTL has heads only), in one process
    ours_metrics: dict[tuple[str, str, int], dict] = {}
    start = time.perf_counter()
    for b in backbones:
        for s in SETUPS:
            _, runs = train_setup(data[b], s, train, heads, sampling, seed, progress=False)
            for r in runs:
                ours_metrics[b, s, r.fold] = r.metrics
    ours_table2 = time.perf_counter() - start
    proj = [(sec, ep) for name, sec, ep in fit_log if name == "projection"]
    ours_proj_total = sum(sec for sec, _ in proj)
    ours_proj_epochs = sum(ep for _, ep in proj)

    # ours, seconds per epoch: early stopping off on the measured folds (graphs already traced)
    fixed = dataclasses.replace(train, patience=train.epochs)
    fixed_runs: list[tuple[float, int]] = []
    for b in backbones:
        for s in TRAINED_SETUPS:
            trainer = SetupTrainer(s, data[b].x.shape[1], len(data[b].class_names),
                                   len(data[b].feature_names), fixed, heads, sampling)
            trainer.run_fold(data[b], 0, seed)  # warm-up for this fixed-epochs trace
            fit_log.clear()
            for f in range(args.measure):
                trainer.run_fold(data[b], f, seed)
            fixed_runs += [(sec, ep) for name, sec, ep in fit_log if name == "projection"]
    ours_epoch = statistics.mean(sec / ep for sec, ep in fixed_runs)
    CompiledFit.fit = plain_fit

    # authors' style: projections on the measured folds, heads on a few of them
    authors_s, authors_metrics, head_s = [], {}, {"classifier": [], "regressor": []}
    with tempfile.TemporaryDirectory() as tmp:
        for b in backbones:
            for s in TRAINED_SETUPS:
                heads_only = SetupTrainer(s, data[b].x.shape[1], len(data[b].class_names),
                                          len(data[b].feature_names), train, heads, sampling)
                for f in range(args.measure):
                    z, seconds = authors_style_fold(data[b], s, f, train, sampling, seed,
                                                    Path(tmp))
                    authors_s.append(seconds)
                    authors_metrics[b, s, f] = heads_only.evaluate_space(data[b], f, z,
                                                                         seed).metrics
                    if b == backbones[0] and s == "cltl":
                        for kind in head_s:
                            head_s[kind].append(authors_style_head(data[b], f, z, kind, heads,
                                                                   Path(tmp)))

    n_proj = len(backbones) * len(TRAINED_SETUPS) * n_folds
    n_models = len(backbones) * len(SETUPS) * n_folds
    authors_epoch = statistics.mean(authors_s) / train.epochs
    authors_proj = statistics.mean(authors_s) * n_proj
    authors_heads = sum(statistics.mean(v) for v in head_s.values()) * n_models
    print()
    print("| | ours (compiled loop) | authors' style (Keras fit + checkpoint) | ratio |")
    print("|---|---|---|---|")
    print(f"| projection, per epoch (same {train.epochs} epochs, no early stopping) | "
          f"{ours_epoch * 1e3:.2f} ms | {authors_epoch * 1e3:.1f} ms | "
          f"{authors_epoch / ours_epoch:.0f}x |")
    print(f"| projections of the protocol ({n_proj} fits) | {ours_proj_total:.1f} s measured "
          f"({ours_proj_epochs / n_proj:.1f} epochs a fit with early stopping; first calls "
          f"incl. tracing) | {authors_proj:.0f} s extrapolated ({len(authors_s)} fits measured "
          f"x {n_proj / len(authors_s):.0f}) | {authors_proj / ours_proj_total:.0f}x |")
    print(f"| whole Table II ({n_models} fold models: projection + 2 heads + test metrics) | "
          f"{ours_table2:.1f} s measured | {authors_proj + authors_heads:.0f} s extrapolated "
          f"(heads: {sum(len(v) for v in head_s.values())} fits measured, "
          f"{heads.epochs} epochs) | {(authors_proj + authors_heads) / ours_table2:.0f}x |")
    print()
    keys = sorted(authors_metrics)
    print(f"test metrics on the {len(keys)} measured folds (same heads on both projections):")
    print("| metric | ours | authors' style |")
    print("|---|---|---|")
    for m in METRICS:
        o = np.mean([ours_metrics[k][m] for k in keys])
        a = np.mean([authors_metrics[k][m] for k in keys])
        print(f"| {m} | {o:.3f} | {a:.3f} |")
    print("\nper setup (accuracy / R², ours vs authors' style):")
    for s in TRAINED_SETUPS:
        ks = [k for k in keys if k[1] == s]
        acc = (np.mean([ours_metrics[k]["accuracy"] for k in ks]),
               np.mean([authors_metrics[k]["accuracy"] for k in ks]))
        r2 = (np.mean([ours_metrics[k]["r2"] for k in ks]),
              np.mean([authors_metrics[k]["r2"] for k in ks]))
        print(f"  {s:10s} acc {acc[0]:.3f} vs {acc[1]:.3f}   R² {r2[0]:.3f} vs {r2[1]:.3f}")


if __name__ == "__main__":
    main()
