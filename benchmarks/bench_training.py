"""Training speed: the project's compiled loop vs a loop in the authors' style, side by side.

Same data for both: the demo pipeline's embeddings, split, scores and masks under ``--data``
(default ``data/``; read only, so another checkout's data folder may be named), one repeat of
the split (``--repeat``, default 0: the units (repeat, fold) of the paper's single run), else
a synthetic stand-in (240 samples, AWIR's class counts, 64-d, 70 % test, 8 folds). Same params
(``params.yaml``: train.*, heads.*, sampling.*, seed).

- **ours**: :func:`tgmatl.training.train_setup` for every backbone × the paper's five setups
  (Table II; WTL has heads only), in one process: a whole projection training run per unit in
  one ``tf.function`` call (class-balanced batches, early stopping with ``train.patience`` and
  ``train.min_delta``, ``train.epochs`` a ceiling), then the task heads (``heads.kind``) and
  the test metrics. Measured in full: every projection fit (first calls include tracing) and
  the whole Table II wall time.
- **authors' style**: a fresh Keras model per unit, ``compile(Adam)``, ``fit`` with batch 32
  for a fixed number of epochs, validation data and a ``ModelCheckpoint`` on ``val_loss`` (best
  weights only, to a temp dir), then the best checkpoint loaded. Its projection gets our task
  heads, so the test metrics compare projections. Measured on ``--measure`` units per backbone
  × trained setup; its heads (Keras fit, fixed epochs, checkpoint) on the first backbone's
  CLTL units.

Seconds per epoch: ours from the measured units re-run with early stopping off (``patience =
epochs``, graphs traced beforehand), projection fit time / epochs; the authors' the median
``fit`` epoch after the first (the first, which traces Keras' step, is shown apart). Both run
``--epochs`` epochs (default ``train.epochs``, which the authors' style would run fixed).
Protocol totals of the authors' style are extrapolated (the output says so): first epoch +
median epoch × (``train.epochs`` - 1) a projection (heads: ``heads.epochs``), × the number of
fits of the protocol.

``--quick`` (about two minutes on two cores): the first backbone, 3 units, 40 epochs in the
fixed-epoch runs; the authors' measured fits then run far fewer epochs than the protocol's, so
their test metrics are indicative only (the timing extrapolation is not affected).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_training.py [--quick] [--measure 1]
        [--data data] [--params params.yaml]
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

from tgmatl.config import (  # noqa: E402
    PAPER_SETUPS,
    EmbedParams,
    HeadsParams,
    SamplingParams,
    TrainParams,
)
from tgmatl.params import load_params, read_section, read_seed  # noqa: E402
from tgmatl.training import (  # noqa: E402
    TRAINED_SETUPS,
    CompiledFit,
    FoldTable,
    SetupInputs,
    SetupTrainer,
    Unit,
    fold_roles,
    load_inputs,
    train_setup,
    unit_rng,
)

METRICS = ("accuracy", "r2", "class_map_at_r", "box_map_at_r")


def synthetic_inputs(seed: int, dim: int = 64, folds: int = 8) -> SetupInputs:
    """240 samples (116 / 51 / 73), classes and box features partly visible in the embedding;
    one repeat: units (0, fold)."""
    from tgmatl.method.selection import select_mask

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
    units: dict[Unit, FoldTable] = {}
    for f in range(folds):
        role = np.where(test, "test", np.where(fold == f, "val", "train"))
        tr = role == "train"
        mask = np.zeros(n, bool)
        mask[tr] = select_mask(score[tr], cls[tr], 0.1, 0.1, seed=f)
        units[0, f] = FoldTable(role, cls, box, feat, score, mask)
    ids = np.array([f"s{i:05d}" for i in range(n)], dtype=object)
    return SetupInputs(ids, x.astype(np.float32), ["cow", "deer", "horse"],
                       ["area", "squareness"], units)


def demo_inputs(data: Path, backbones) -> dict[str, SetupInputs] | None:
    files = [data / "split.parquet", data / "scores.parquet", data / "masks.parquet",
             *(data / "embeddings" / f"{b}.parquet" for b in backbones)]
    if not all(f.is_file() for f in files):
        return None
    samples = data / "samples" / "samples.parquet"
    return {b: load_inputs(data / "embeddings" / f"{b}.parquet", data / "split.parquet",
                           data / "scores.parquet", masks=data / "masks.parquet",
                           samples=samples if samples.is_file() else None)
            for b in backbones}


def restrict(inputs: SetupInputs, repeat: int, folds: int | None) -> SetupInputs:
    """The units of one repeat (the first ``folds`` of them when given)."""
    keys = sorted(u for u in inputs.units if u[0] == repeat)
    if not keys:
        raise SystemExit(f"--repeat {repeat}: the split has repeats "
                         f"{sorted({r for r, _ in inputs.units})}")
    keys = keys[:folds] if folds else keys
    return dataclasses.replace(inputs, units={u: inputs.units[u] for u in keys})


@dataclasses.dataclass(frozen=True)
class FitCost:
    """A Keras ``fit``'s wall time split into its first epoch (tracing, data adapters) and the
    median later epoch, so that a short measured run extrapolates to a long one."""

    seconds: float
    first: float
    per_epoch: float

    def at(self, epochs: int) -> float:
        """Seconds of the same fit run for ``epochs`` epochs."""
        return self.first + self.per_epoch * max(epochs - 1, 0)


def _epoch_clock():
    import keras

    class EpochClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.marks = [time.perf_counter()]

        def on_epoch_end(self, epoch, logs=None):
            self.marks.append(time.perf_counter())

        def cost(self) -> FitCost:
            d = np.diff(self.marks)
            return FitCost(float(d.sum()), float(d[0]),
                           float(np.median(d[1:])) if len(d) > 1 else float(d[0]))

    return EpochClock()


def _keras_seed(seed: int, unit: Unit, purpose: str) -> int:
    return int(unit_rng(seed, unit, purpose).integers(2**31 - 1))


def authors_style_unit(inputs: SetupInputs, setup: str, unit: Unit, train: TrainParams,
                       sampling: SamplingParams, seed: int, epochs: int, tmp: Path):
    """Keras fit, fixed epochs, ModelCheckpoint on val_loss; returns (z of all samples, cost)."""
    import keras

    from tgmatl.training import models
    from tgmatl.training.losses import loss_for_setup, pack_targets

    t = inputs.units[unit]
    tr, va, _ = fold_roles(inputs, unit)
    keras.utils.set_random_seed(_keras_seed(seed, unit, "authors"))
    model = models.projection_head(inputs.x.shape[1], train.projection)
    model.compile(optimizer=keras.optimizers.Adam(train.lr),
                  loss=loss_for_setup(setup, train, sampling if setup == "tg_matl" else None))
    mask = t.mask if setup == "tg_matl" else None
    y_tr = pack_targets(t.class_id[tr], t.box_label[tr], None if mask is None else mask[tr])
    y_va = pack_targets(t.class_id[va], t.box_label[va])  # all validation triplets
    best = tmp / f"{setup}_r{unit[0]}_f{unit[1]}.weights.h5"
    ckpt = keras.callbacks.ModelCheckpoint(str(best), monitor="val_loss", save_best_only=True,
                                           save_weights_only=True)
    clock = _epoch_clock()
    model.fit(inputs.x[tr], y_tr, batch_size=32, epochs=epochs, shuffle=True,
              validation_data=(inputs.x[va], y_va), callbacks=[ckpt, clock], verbose=0)
    model.load_weights(str(best))
    return np.asarray(model.predict(inputs.x, verbose=0)), clock.cost()


def authors_style_head(inputs: SetupInputs, unit: Unit, z: np.ndarray, kind: str,
                       heads: HeadsParams, epochs: int, tmp: Path) -> FitCost:
    """The cost of one task head in the authors' style (Keras fit, fixed epochs, batch 32,
    ModelCheckpoint on val_loss)."""
    import keras

    t = inputs.units[unit]
    tr, va, _ = fold_roles(inputs, unit)
    if kind == "classifier":
        out, loss = len(inputs.class_names), "sparse_categorical_crossentropy"
        y, act = t.class_id, "softmax"
    else:
        out, loss, y, act = len(inputs.feature_names), "mse", t.features, None
    model = keras.Sequential([keras.Input((z.shape[1],)), keras.layers.Dense(out, activation=act)])
    model.compile(optimizer=keras.optimizers.Adam(heads.lr), loss=loss)
    ckpt = keras.callbacks.ModelCheckpoint(str(tmp / f"{kind}.weights.h5"), monitor="val_loss",
                                           save_best_only=True, save_weights_only=True)
    clock = _epoch_clock()
    model.fit(z[tr], y[tr], batch_size=32, epochs=epochs, validation_data=(z[va], y[va]),
              callbacks=[ckpt, clock], verbose=0)
    return clock.cost()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data", type=Path,
                    help="the demo pipeline's data folder (read only)")
    ap.add_argument("--repeat", type=int, default=0, help="the split's repeat to run")
    ap.add_argument("--folds", type=int, default=None, help="units of the repeat (default all)")
    ap.add_argument("--backbones", nargs="+", default=None, help="default: embed.backbones")
    ap.add_argument("--epochs", type=int, default=None,
                    help="fixed epochs of the per-epoch runs and the authors' measured fits "
                         "(default train.epochs; heads: min(this, heads.epochs))")
    ap.add_argument("--measure", type=int, default=1,
                    help="units per backbone x setup run in the authors' style")
    ap.add_argument("--quick", action="store_true",
                    help="first backbone, 3 units, 40 epochs (about two minutes)")
    ap.add_argument("--units", action="store_true",
                    help="per unit-epoch: CompiledFit alone vs BatchedFit vs Keras fit, at demo "
                         "and survey sizes (units_bench.py)")
    ap.add_argument("--stage", action="store_true",
                    help="the whole train stage, --base's code vs this one (training_stage.py)")
    ap.add_argument("--base", type=Path, help="--stage: a checkout of the old code")
    ap.add_argument("--n", type=int, default=2500, help="--stage: planted targets")
    ap.add_argument("--dim", type=int, default=384, help="--stage: embedding width")
    ap.add_argument("--stage-repeats", type=int, default=2, help="--stage: eval.repeats")
    ap.add_argument("--setups", default="all", help="--stage: all | comma-separated setups")
    args = ap.parse_args()
    if args.stage:
        from training_stage import stage

        from tgmatl.config import SETUPS
        if args.base is None:
            raise SystemExit("--stage needs --base (a checkout of the old code)")
        setups = list(SETUPS) if args.setups == "all" else args.setups.split(",")
        print(stage(args.base, args.n, args.dim, args.stage_repeats, setups))
        return
    if args.units:
        from units_bench import units

        print(units(args.quick))
        return
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # Keras' predict retracing notes, one per fresh model
    params = load_params(args.params)
    train = read_section(TrainParams, params, "train")
    heads = read_section(HeadsParams, params, "heads")
    sampling = read_section(SamplingParams, params, "sampling")
    seed = read_seed(params)
    backbones = args.backbones or list(read_section(EmbedParams, params, "embed").backbones)
    if args.quick:
        backbones = backbones[:1]
        args.folds = args.folds or 3
        args.epochs = args.epochs or 40
    epochs = args.epochs or train.epochs
    head_epochs = min(epochs, heads.epochs)
    data = demo_inputs(args.data, backbones)
    source = f"demo embeddings ({args.data}/), repeat {args.repeat}"
    if data is None:
        source = f"synthetic 240 x 64 (no demo embeddings in {args.data}/)"
        data = {b: synthetic_inputs(seed + i) for i, b in enumerate(backbones)}
    data = {b: restrict(d, args.repeat, args.folds) for b, d in data.items()}
    units = sorted(next(iter(data.values())).units)
    measured = units[:args.measure]
    dims = sorted({d.x.shape[1] for d in data.values()})
    print(f"data: {source}; dims {dims}; {len(backbones)} backbone(s) x {len(PAPER_SETUPS)} "
          f"setups ({len(TRAINED_SETUPS)} trained) x {len(units)} units; train.epochs "
          f"{train.epochs} (ceiling), patience {train.patience}, min_delta {train.min_delta}; "
          f"heads.kind {heads.kind}; fixed-epoch runs: {epochs} epochs (heads {head_epochs})")

    # every CompiledFit.fit call timed (first calls include tracing and graph optimisation)
    fit_log: list[tuple[str, float, int]] = []
    plain_fit = CompiledFit.fit

    def timed_fit(self, *a, **k):
        start = time.perf_counter()
        result = plain_fit(self, *a, **k)
        fit_log.append((self.model.name, time.perf_counter() - start, result.epochs))
        return result

    CompiledFit.fit = timed_fit

    # ours: the paper's Table II (WTL has heads only), in one process
    ours_metrics: dict[tuple[str, str, Unit], dict] = {}
    start = time.perf_counter()
    for b in backbones:
        for s in PAPER_SETUPS:
            _, runs = train_setup(data[b], s, train, heads, sampling, seed, progress=False)
            for r in runs:
                ours_metrics[b, s, r.unit] = r.metrics
    ours_table2 = time.perf_counter() - start
    proj = [(sec, ep) for name, sec, ep in fit_log if name == "projection"]
    ours_proj_total = sum(sec for sec, _ in proj)
    ours_proj_epochs = sum(ep for _, ep in proj)

    # ours, seconds per epoch: early stopping off on the measured units (graphs already traced)
    fixed = dataclasses.replace(train, epochs=epochs, patience=epochs)
    fixed_runs: list[tuple[float, int]] = []
    for b in backbones:
        for s in TRAINED_SETUPS:
            trainer = SetupTrainer(s, len(data[b].class_names), fixed, heads, sampling)
            trainer.run_unit(data[b], units[0], seed)  # warm-up for this fixed-epochs trace
            fit_log.clear()
            for u in measured:
                trainer.run_unit(data[b], u, seed)
            fixed_runs += [(sec, ep) for name, sec, ep in fit_log if name == "projection"]
    ours_epoch = statistics.mean(sec / ep for sec, ep in fixed_runs)
    CompiledFit.fit = plain_fit

    # authors' style: projections on the measured units, heads on a few of them
    authors_s: list[FitCost] = []
    authors_metrics: dict[tuple[str, str, Unit], dict] = {}
    head_s: dict[str, list[FitCost]] = {"classifier": [], "regressor": []}
    with tempfile.TemporaryDirectory() as tmp:
        for b in backbones:
            for s in TRAINED_SETUPS:
                heads_only = SetupTrainer(s, len(data[b].class_names), train, heads,
                                          sampling)
                for u in measured:
                    z, cost = authors_style_unit(data[b], s, u, train, sampling, seed,
                                                 epochs, Path(tmp))
                    authors_s.append(cost)
                    authors_metrics[b, s, u] = heads_only.evaluate_space(data[b], u, z,
                                                                         seed).metrics
                    if b == backbones[0] and s == "cltl":
                        for kind in head_s:
                            head_s[kind].append(authors_style_head(
                                data[b], u, z, kind, heads, head_epochs, Path(tmp)))

    n_proj = len(backbones) * len(TRAINED_SETUPS) * len(units)
    n_models = len(backbones) * len(PAPER_SETUPS) * len(units)
    # the authors' steady epoch: the median epoch after the first (which traces Keras' step)
    authors_epoch = statistics.mean(c.per_epoch for c in authors_s)
    authors_first = statistics.mean(c.first for c in authors_s)
    authors_proj = statistics.mean(c.at(train.epochs) for c in authors_s) * n_proj
    authors_heads = sum(statistics.mean(c.at(heads.epochs) for c in v)
                        for v in head_s.values()) * n_models
    print()
    print("| | ours (compiled loop) | authors' style (Keras fit + checkpoint) | ratio |")
    print("|---|---|---|---|")
    print(f"| projection, per epoch (same {epochs} epochs, no early stopping) | "
          f"{ours_epoch * 1e3:.2f} ms | {authors_epoch * 1e3:.1f} ms (median epoch after the "
          f"first; first {authors_first:.1f} s) | "
          f"{authors_epoch / ours_epoch:.0f}x |")
    print(f"| projections of the protocol ({n_proj} fits) | {ours_proj_total:.1f} s measured "
          f"({ours_proj_epochs / n_proj:.1f} epochs a fit with early stopping; first calls "
          f"incl. tracing) | {authors_proj:.0f} s extrapolated ({len(authors_s)} fits measured, "
          f"{train.epochs} epochs a fit) | {authors_proj / ours_proj_total:.0f}x |")
    print(f"| whole Table II ({n_models} unit models: projection + 2 heads ({heads.kind}) + "
          f"test metrics) | {ours_table2:.1f} s measured | "
          f"{authors_proj + authors_heads:.0f} s extrapolated (Keras heads: "
          f"{sum(len(v) for v in head_s.values())} fits measured, {heads.epochs} epochs a fit) "
          f"| {(authors_proj + authors_heads) / ours_table2:.0f}x |")
    print()
    keys = sorted(authors_metrics)
    note = "" if epochs == train.epochs else (
        f"; the authors' style ran {epochs} of train.epochs {train.epochs}: indicative only")
    print(f"test metrics on the {len(keys)} measured units (same heads on both projections"
          f"{note}):")
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
