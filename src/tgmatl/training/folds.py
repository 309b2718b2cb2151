"""One setup on every evaluation unit: projection head, task heads, test metrics, outputs.

Protocol (METHOD.md), repeated: a unit is a (repeat, fold) of the split. It trains on its
``train`` samples, validates on its ``val`` samples and reports on its ``test`` samples. The
projection's best epoch is picked on the validation samples by ``train.val_criterion``
(default: the triplet hinge over *all* valid validation triplets; see
:mod:`tgmatl.training.setups`). Task heads (``heads.kind``) are fitted on the frozen projected
(WTL: raw) embeddings of the unit's training samples: scikit-learn probes (default) or the
paper's Adam-trained heads, early-stopped on the validation samples.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tgmatl.config import HeadsParams, SamplingParams, TrainParams
from tgmatl.errors import InputError
from tgmatl.training.inputs import FoldTable, SetupInputs, Unit, load_inputs
from tgmatl.training.loop import CompiledFit, FitResult
from tgmatl.training.schedule import (
    class_balanced_batches,
    set_determinism,
    shuffled_batches,
    twin_rng,
    twin_seed,
    unit_rng,
)
from tgmatl.training.setups import Setup, get_setup

TRAINED_SETUPS = ("cltl", "cltl_hard", "matl", "tg_matl")


@dataclass
class HeadsRun:
    """The task heads' test outputs and what was fitted (for the results JSON)."""

    class_pred: np.ndarray      # [n_test] predicted class ids
    feature_pred: np.ndarray    # [n_test, F] predicted normalised box features
    classifier: dict[str, Any]
    regressor: dict[str, Any]


@dataclass
class FoldRun:
    unit: Unit
    projection: FitResult | None
    projection_info: dict[str, Any] | None  # variant chosen (matl_tuned), combiner weights
    heads: HeadsRun
    metrics: dict[str, Any]
    per_sample: pd.DataFrame    # one row per test sample: truth, predictions, retrieval terms
    test_embedding: np.ndarray  # [n_test, d] the space the heads and retrieval saw
    n_train: int
    n_val: int
    n_test: int
    n_queries: int              # test samples that were retrieval queries (eval.retrieval_queries)
    twin: int = 0               # seed twin (train.twins) of the unit
    weights: list[np.ndarray] | None = None  # the projection's restored (best) weights

    @property
    def fold(self) -> int:
        return self.unit[1]

    @property
    def name(self) -> str:
        """``r<repeat>_f<fold>`` (twin 0: the unit's single run), ``_t<twin>`` for the others."""
        base = f"r{self.unit[0]}_f{self.unit[1]}"
        return base if self.twin == 0 else f"{base}_t{self.twin}"


def fold_roles(inputs: SetupInputs, unit: Unit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean (train, val, test) of a unit (repeat, fold)."""
    role = inputs.units[unit].role
    tr, va, te = role == "train", role == "val", role == "test"
    if tr.sum() < 2 or va.sum() < 1 or te.sum() < 1:
        raise InputError(f"repeat {unit[0]}, fold {unit[1]}: needs >= 2 training, >= 1 "
                         f"validation and >= 1 test samples, got {tr.sum()}, {va.sum()}, "
                         f"{te.sum()}")
    return tr, va, te


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@functools.cache
def projection_trainer(setup: str, input_dim: int, n_targets: int, train: TrainParams,
                       sampling: SamplingParams | None) -> CompiledFit:
    """The projection head and its compiled loop for a setup (built and traced once a process:
    every unit, and every backbone of the same width, reuses it)."""
    from tgmatl.training import models

    spec = get_setup(setup)
    model = models.projection_head(input_dim, train.projection)
    combiner = spec.combiner(train) if spec.combiner is not None else None
    return CompiledFit(model, spec.train_loss(train, sampling), train.lr,
                       spec.validation_loss(train), y_dim=n_targets, combiner=combiner)


@functools.cache
def batched_trainer(setup: str, input_dim: int, n_targets: int, train: TrainParams,
                    sampling: SamplingParams | None):
    """The batched loop of a setup (:class:`~tgmatl.training.batched.BatchedFit`), built and
    traced once a process like :func:`projection_trainer`: every chunk of units, every twin
    and variant, every backbone of the same width reuses its one trace."""
    from tgmatl.training.batched import BatchedFit

    spec = get_setup(setup)
    combiner = spec.combiner(train) if spec.combiner is not None else None
    return BatchedFit([input_dim, *train.projection], spec.objective(train, sampling),
                      spec.validation_objective(train), train.lr, n_targets, combiner=combiner,
                      chunk_mb=train.unit_chunk_mb)


@functools.cache
def projection_model(input_dim: int, sizes: tuple[int, ...]):
    """A Keras projection head to initialise weights in its order and to save them."""
    from tgmatl.training import models

    return models.projection_head(input_dim, sizes)


@functools.cache
def head_trainer(kind: str, input_dim: int, outputs: int, hidden: int, lr: float) -> CompiledFit:
    """A task head (``classifier``: softmax cross-entropy on logits; ``regressor``: MSE) and its
    compiled loop, cached like :func:`projection_trainer` (``heads.kind: mlp``)."""
    import tensorflow as tf

    from tgmatl.training import models

    if kind == "classifier":
        def loss(y, w, logits):
            labels = tf.cast(y[:, 0], tf.int32)
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

        return CompiledFit(models.classification_head(input_dim, outputs, hidden), loss, lr,
                           y_dim=1)
    if kind == "regressor":
        def mse(y, w, pred):
            return tf.reduce_mean(tf.square(pred - y))

        return CompiledFit(models.regression_head(input_dim, outputs, hidden), mse, lr,
                           y_dim=outputs)
    raise ValueError(f"unknown head {kind!r}")


def probe_heads(z: np.ndarray, t: FoldTable, tr: np.ndarray, te: np.ndarray, heads: HeadsParams,
                seed: int) -> HeadsRun:
    """``heads.kind: probe``: scikit-learn logistic and ridge regression on the unit's training
    samples (standardised there), L2 strength chosen by inner CV (:mod:`tgmatl.training.heads`)."""
    from tgmatl.training.heads import ProbeClassifier, ProbeRegressor

    clf = ProbeClassifier(heads.l2_grid, heads.inner_folds, seed).fit(z[tr], t.class_id[tr])
    reg = ProbeRegressor(heads.l2_grid).fit(z[tr], t.features[tr])
    return HeadsRun(
        clf.predict(z[te]), reg.predict(z[te]),
        {"kind": "probe", "l2": float(clf.l2_), "inner_folds": int(clf.inner_folds_used_),
         "fallback": clf.fallback_},
        {"kind": "probe", "l2": float(reg.l2_)},
    )


def mlp_heads(z: np.ndarray, t: FoldTable, tr: np.ndarray, va: np.ndarray, te: np.ndarray,
              heads: HeadsParams, n_classes: int, seed: int, unit: Unit,
              twin: int = 0) -> HeadsRun:
    """``heads.kind: mlp``: the paper's heads, Adam-trained, early-stopped on the validation
    samples (the classifier starts at the class prior, the regressor at the training mean)."""
    from tgmatl.training import models

    cls_fit = head_trainer("classifier", z.shape[1], n_classes, heads.hidden, heads.lr)
    reg_fit = head_trainer("regressor", z.shape[1], t.features.shape[1], heads.hidden, heads.lr)
    ntr = int(tr.sum())
    counts = np.bincount(t.class_id[tr], minlength=n_classes)
    cls_init = models.init_weights(cls_fit.model, twin_rng(seed, unit, "classify", twin), z[tr],
                                   out_bias=np.log((counts + 1.0) / (ntr + n_classes)))
    cls_res = cls_fit.fit(
        cls_init, z[tr], t.class_id[tr], z[va], t.class_id[va],
        shuffled_batches(ntr, heads.batch_size, heads.epochs,
                         twin_rng(seed, unit, "cls_batches", twin)),
        None, heads.epochs, heads.patience)
    class_pred = cls_fit.predict(z[te]).argmax(axis=1)
    reg_init = models.init_weights(reg_fit.model, twin_rng(seed, unit, "regress", twin), z[tr],
                                   out_bias=t.features[tr].mean(axis=0))
    reg_res = reg_fit.fit(
        reg_init, z[tr], t.features[tr], z[va], t.features[va],
        shuffled_batches(ntr, heads.batch_size, heads.epochs,
                         twin_rng(seed, unit, "reg_batches", twin)),
        None, heads.epochs, heads.patience)
    return HeadsRun(class_pred, reg_fit.predict(z[te]),
                    {"kind": "mlp", **_fit_summary(cls_res)},
                    {"kind": "mlp", **_fit_summary(reg_res)})


class SetupTrainer:
    """One setup's projection loop (cached per process); :meth:`run_unit` per unit."""

    def __init__(self, setup: str, n_classes: int, train: TrainParams, heads: HeadsParams,
                 sampling: SamplingParams | None, retrieval_queries: int | None = None):
        self.spec: Setup = get_setup(setup)
        if self.spec.uses_sampling and sampling is None:
            raise ValueError(f"setup {setup} needs the sampling params")
        self.setup, self.train_p, self.heads_p = setup, train, heads
        self.sampling = sampling if self.spec.uses_sampling else None
        self.n_classes = n_classes
        # eval.retrieval_queries: at most this many queries per retrieval (None: all)
        self.retrieval_queries = retrieval_queries

    def _weights_schedule(self, batches: np.ndarray, t: FoldTable, tr: np.ndarray,
                          seed: int, unit: Unit, twin: int = 0) -> np.ndarray | None:
        """Per-batch-entry selection weight ``m_i`` (``None`` for setups without sampling).

        ``sampling.scope``: ``dataset`` looks the unit's mask up (masks.parquet); ``batch`` (the
        authors' code) selects inside each mini-batch, seeded by (seed, unit, epoch, step) and,
        for a twin ``k > 0``, ``k``.
        """
        if self.sampling is None:
            return None
        s = self.sampling
        if s.scope == "dataset":
            if t.mask is None:
                raise InputError(f"{self.setup} with sampling.scope=dataset needs the masks file")
            return t.mask[tr][batches].astype(np.float32)
        from tgmatl.method.selection import derive_seed, select_mask

        scores, cls = t.score[tr], t.class_id[tr]
        extra = (twin,) if twin else ()
        out = np.empty(batches.shape, np.float32)
        for e in range(batches.shape[0]):
            for j in range(batches.shape[1]):
                idx = batches[e, j]
                out[e, j] = select_mask(scores[idx], cls[idx], s.top_pct, s.random_pct,
                                        random=s.random,
                                        seed=derive_seed(seed, *unit, e, j, *extra))
        return out

    def _unit_start(self, inputs: SetupInputs, unit: Unit, seed: int, twin: int):
        """(training rows, validation rows, targets, batch plan, selection weights, initial
        weights) of a unit's twin: everything random in its projection training."""
        t = inputs.units[unit]
        tr, va, _ = fold_roles(inputs, unit)
        p = self.train_p
        batches = class_balanced_batches(t.class_id[tr], p.batch_size, p.epochs,
                                         twin_rng(seed, unit, "batches", twin))
        weights = self._weights_schedule(batches, t, tr, seed, unit, twin)
        y = np.column_stack([t.class_id, t.box_label, t.features]).astype(np.float32)
        model = projection_model(inputs.x.shape[1], tuple(p.projection))
        from tgmatl.training import models

        init = models.init_weights(model, twin_rng(seed, unit, "projection", twin))
        return tr, va, y, batches, weights, init

    def train_projections(self, inputs: SetupInputs, keys: Sequence[tuple[Unit, int]],
                          seed: int, source: str = ""
                          ) -> dict[tuple[Unit, int], tuple[FitResult, dict[str, Any] | None,
                                                            np.ndarray, list[np.ndarray]]]:
        """Every (unit, twin) of ``keys`` (and every variant of each) in one batched run:
        per key the chosen variant's fit, its info (variant, combiner weights), the embedding
        of all samples and the restored weights. A setup with variants (``matl_tuned``: one per
        λ) trains each from the same start and keeps the one whose validation embedding
        retrieves best (mean of class and box MAP@R, same-image references excluded; ties: the
        earlier variant)."""
        from tgmatl.training.batched import UnitPlan

        p = self.train_p
        x = inputs.x
        variants = list(self.spec.variants(p)) if self.spec.variants is not None else [p]
        weights = [(self.spec.objective(v, self.sampling).weights,
                    self.spec.validation_objective(v).weights) for v in variants]
        plans, owners = [], []
        for key in keys:
            unit, twin = key
            tr, va, y, batches, sel, init = self._unit_start(inputs, unit, seed, twin)
            rows_tr, rows_va = np.flatnonzero(tr), np.flatnonzero(va)
            for k, (w, cw) in enumerate(weights):
                many = len(variants) > 1
                plans.append(UnitPlan(x, y, rows_tr, rows_va, batches, init, sel,
                                      task_weights=w if many else None,
                                      criterion_weights=cw if many else None,
                                      val_groups=inputs.units[unit].class_id[va],
                                      source=source))
                owners.append((key, k))
        fit = batched_trainer(self.setup, x.shape[1], plans[0].y.shape[1] if plans else 4, p,
                              self.sampling)
        fitted = fit.fit(plans, p.epochs, p.patience, p.min_delta)
        del plans  # the batch plans are the largest arrays here
        by_key: dict[tuple[Unit, int], list[tuple[FitResult, list[np.ndarray]]]] = {}
        for (key, _), r in zip(owners, fitted, strict=True):
            by_key.setdefault(key, []).append(r)
        out = {}
        for key, results in by_key.items():
            unit, _ = key
            t = inputs.units[unit]
            va = t.role == "val"
            zs = fit.predict([w for _, w in results], x)
            best: tuple[float, int] | None = None
            tried = []
            for k, (v, (res, _)) in enumerate(zip(variants, results, strict=True)):
                score = -np.inf
                if len(variants) > 1:
                    found = self._validation_retrieval(inputs, t, va, zs[k], seed, unit)
                    score = -np.inf if found is None else found
                    tried.append({"box_weight": v.box_weight, "val_retrieval": _round(score),
                                  "best_epoch": res.best_epoch})
                if best is None or score > best[0]:  # strict: ties keep the earlier variant
                    best = (score, k)
            _, k = best
            res, w = results[k]
            info: dict[str, Any] = dict(res.task_summary() or {})
            if tried:
                info.update({"box_weight": variants[k].box_weight,
                             "val_retrieval": tried[k]["val_retrieval"], "tried": tried})
            out[key] = (res, info or None, zs[k], w)
        return out

    def run_unit(self, inputs: SetupInputs, unit: Unit, seed: int) -> FoldRun:
        """One unit alone (twin 0) with :class:`CompiledFit`: the reference the batched run
        (:meth:`train_projections`) is measured against (``benchmarks/bench_training.py``)."""
        t = inputs.units[unit]
        tr, va, _ = fold_roles(inputs, unit)
        x = inputs.x
        if not self.spec.trains_projection:
            return self.evaluate_space(inputs, unit, x, seed, None, None)
        tr, va, y, batches, weights, init = self._unit_start(inputs, unit, seed, 0)
        p = self.train_p
        variants = self.spec.variants(p) if self.spec.variants is not None else [p]
        best: tuple[float, FitResult, np.ndarray, dict[str, Any], Any] | None = None
        tried = []
        for v in variants:
            fit = projection_trainer(self.setup, x.shape[1], y.shape[1], v, self.sampling)
            res = fit.fit(init, x[tr], y[tr], x[va], y[va], batches, weights, v.epochs,
                          v.patience, val_groups=t.class_id[va], min_delta=v.min_delta)
            z = fit.predict(x)
            info: dict[str, Any] = dict(res.task_summary() or {})
            key = -np.inf
            if len(variants) > 1:
                score = self._validation_retrieval(inputs, t, va, z, seed, unit)
                key = -np.inf if score is None else score
                info.update({"box_weight": v.box_weight, "val_retrieval": _round(key)})
                tried.append({"box_weight": v.box_weight, "val_retrieval": _round(key),
                              "best_epoch": res.best_epoch})
            if best is None or key > best[0]:  # strict: ties keep the earlier variant
                best = (key, res, z, info, fit.model.get_weights())
        _, res, z, info, weights_ = best
        if tried:
            info["tried"] = tried
        return self.evaluate_space(inputs, unit, z, seed, res, info or None, weights=weights_)

    def _queries(self, n: int, seed: int, unit: Unit, purpose: str) -> np.ndarray | None:
        """The unit's retrieval queries among ``n`` samples (``None``: all); the same for every
        setup, so the setups' retrieval metrics stay paired."""
        from tgmatl.evaluation.metrics import query_sample

        if self.retrieval_queries is None:
            return None
        return query_sample(n, self.retrieval_queries, unit_rng(seed, unit, purpose))

    def _validation_retrieval(self, inputs: SetupInputs, t: FoldTable, va: np.ndarray,
                              z: np.ndarray, seed: int, unit: Unit) -> float | None:
        """Mean of class and box MAP@R among the validation samples (``None``: no query)."""
        from tgmatl.evaluation import metrics as evaluation

        groups = inputs.image[va] if inputs.image is not None else None
        found = evaluation.retrieve(z[va], [t.class_id[va], t.box_label[va]], groups,
                                    self._queries(int(va.sum()), seed, unit, "val_queries"))
        values = [r.metrics()["map_at_r"] for r in found]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    def evaluate_space(self, inputs: SetupInputs, unit: Unit, z: np.ndarray, seed: int,
                       projection: FitResult | None = None,
                       projection_info: dict[str, Any] | None = None, twin: int = 0,
                       weights: list[np.ndarray] | None = None) -> FoldRun:
        """Fit the unit's heads on the embeddings ``z`` (all samples, frozen) and compute the
        test metrics. Retrieval uses ``z`` as is when a projection made it, else
        L2-normalised; a query's own image is never among its references. ``twin``: the
        heads' randomness (probe inner CV, mlp starts) is the twin's; the retrieval queries
        are the unit's, the same for every twin and setup."""
        from tgmatl.evaluation import metrics as evaluation
        from tgmatl.evaluation import terms

        t = inputs.units[unit]
        tr, va, te = fold_roles(inputs, unit)
        if self.heads_p.kind == "probe":
            heads = probe_heads(z, t, tr, te, self.heads_p, twin_seed(seed, unit, twin))
        else:
            heads = mlp_heads(z, t, tr, va, te, self.heads_p, self.n_classes, seed, unit, twin)
        space = z[te] if projection is not None else _l2(z[te])
        groups = inputs.image[te] if inputs.image is not None else None
        # one ranking for both label sets, with the leave-one-out values for the jackknife
        queries = self._queries(int(te.sum()), seed, unit, "queries")
        cls_r, box_r = evaluation.retrieve(space, [t.class_id[te], t.box_label[te]], groups,
                                           queries, leave_one_out=True)
        metrics = {
            **evaluation.classification_metrics(t.class_id[te], heads.class_pred,
                                                inputs.class_names),
            **evaluation.regression_metrics(t.features[te], heads.feature_pred,
                                            inputs.feature_names),
            **cls_r.metrics("class_"), **box_r.metrics("box_"),
        }
        per_sample = pd.DataFrame({
            "repeat": np.int32(unit[0]), "fold": np.int32(unit[1]), "twin": np.int32(twin),
            "sample_id": inputs.sample_ids[te].astype(str),
            "class_id": t.class_id[te].astype(np.int32),
            "class_pred": np.asarray(heads.class_pred, np.int32),
            "class_ap": cls_r.ap, "class_hit": cls_r.hit,
            "box_ap": box_r.ap, "box_hit": box_r.hit,
            # jackknife terms: MAP@R's per-sample terms for the paired tests
            "class_map_term": terms.jackknife_map_terms(cls_r),
            "box_map_term": terms.jackknife_map_terms(box_r),
        })
        for k, name in enumerate(inputs.feature_names):
            per_sample[f"feat_{name}"] = t.features[te, k].astype(np.float64)
            per_sample[f"pred_{name}"] = np.asarray(heads.feature_pred[:, k], np.float64)
        return FoldRun(unit, projection, projection_info, heads, metrics, per_sample, space,
                       int(tr.sum()), int(va.sum()), int(te.sum()),
                       int(te.sum()) if queries is None else len(queries), twin, weights)

    def save_run(self, directory: Path, run: FoldRun) -> None:
        """Save a run's best projection weights: ``<run.name>.projection.weights.h5``
        (scikit-learn probes are cheap to refit and are described in the results JSON)."""
        if run.weights is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        model = projection_model(run.weights[0].shape[0], tuple(self.train_p.projection))
        model.set_weights(run.weights)
        model.save_weights(directory / f"{run.name}.projection.weights.h5")


def _fit_summary(r: FitResult | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"epochs": r.epochs, "best_epoch": r.best_epoch,
            "best_val_loss": _round(r.best_val_loss),
            "train_loss": [_round(v) for v in r.train_loss],
            "val_loss": [_round(v) for v in r.val_loss]}


def _round(v: float, digits: int = 6) -> float | None:
    v = float(v)
    return None if not math.isfinite(v) else round(v, digits)


def summarise(units: Sequence[dict[str, float | None]]) -> dict[str, float | None]:
    """``<metric>_mean`` / ``<metric>_std`` (sample std, ddof=1) over units for every scalar
    metric; a metric undefined in some unit (``None``) is averaged over the units that have it."""
    out: dict[str, float | None] = {}
    for key in units[0]:
        vals = np.array([m[key] for m in units if m.get(key) is not None], np.float64)
        out[f"{key}_mean"] = _round(vals.mean()) if len(vals) else None
        out[f"{key}_std"] = _round(vals.std(ddof=1)) if len(vals) > 1 else (
            0.0 if len(vals) == 1 else None)
    return out


def _flat_metrics(m: dict[str, Any]) -> dict[str, float | None]:
    """Nested per-class / per-feature dicts flattened (``accuracy_cow``, ``r2_area``)."""
    flat: dict[str, float | None] = {}
    for k, v in m.items():
        if isinstance(v, dict):
            base = k.removesuffix("_per_class").removesuffix("_per_feature")
            for name, x in v.items():
                flat[f"{base}_{name}"] = None if x is None else _round(x)
        else:
            flat[k] = None if v is None else _round(v)
    return flat


def train_setup(
    inputs: SetupInputs,
    setup: str,
    train: TrainParams,
    heads: HeadsParams,
    sampling: SamplingParams | None,
    seed: int,
    models_dir: Path | None = None,
    progress: bool = True,
    desc: str = "",
    retrieval_queries: int | None = None,
) -> tuple[dict[str, Any], list[FoldRun]]:
    """Train and evaluate ``setup`` on every unit; returns the results dict and the unit runs.

    With ``models_dir`` the projection weights are saved there as they are trained.
    """
    from tqdm.auto import tqdm

    set_determinism(seed)
    trainer = SetupTrainer(setup, len(inputs.class_names), train, heads, sampling,
                           retrieval_queries)
    keys = [(unit, twin) for unit in sorted(inputs.units) for twin in range(train.twins)]
    projections: dict[tuple[Unit, int], Any] = {}
    if trainer.spec.trains_projection:
        projections = trainer.train_projections(inputs, keys, seed, source=desc or setup)
    runs: list[FoldRun] = []
    bar = tqdm(keys, desc=desc or setup, unit="unit", disable=not progress)
    for unit, twin in bar:
        if (unit, twin) in projections:
            res, info, z, weights = projections.pop((unit, twin))
            run = trainer.evaluate_space(inputs, unit, z, seed, res, info, twin, weights)
        else:
            run = trainer.evaluate_space(inputs, unit, inputs.x, seed, twin=twin)
        runs.append(run)
        if models_dir is not None:
            trainer.save_run(models_dir, run)
        if run.projection is not None:
            bar.set_postfix(epochs=run.projection.epochs, best=run.projection.best_epoch,
                            acc=f"{run.metrics['accuracy']:.3f}")
    rows = [{
        "repeat": r.unit[0], "fold": r.unit[1], "twin": r.twin, "n_train": r.n_train,
        "n_val": r.n_val, "n_test": r.n_test,
        # test queries of the retrieval metrics (every test sample stays a reference)
        "n_queries": r.n_queries,
        "projection": (None if r.projection is None else
                       {**_fit_summary(r.projection), **(r.projection_info or {})}),
        "classifier": r.heads.classifier,
        "regressor": r.heads.regressor,
        "test": _flat_metrics(r.metrics),
    } for r in runs]
    spec = get_setup(setup)
    results = {
        "setup": setup,
        "label": spec.label,
        "in_paper": spec.in_paper,
        "classes": inputs.class_names,
        "features": inputs.feature_names,
        "heads": heads.kind,
        "val_criterion": train.val_criterion if spec.trains_projection else None,
        "n_units": len(inputs.units),
        "twins": train.twins,
        "n_repeats": inputs.n_repeats,
        "n_folds": inputs.n_folds,
        "retrieval_queries": retrieval_queries,
        "units": rows,
        # over units: each unit's metrics averaged over its twins first
        "summary": summarise(twin_means(rows)),
    }
    return results, runs


def twin_means(rows: Sequence[dict[str, Any]]) -> list[dict[str, float | None]]:
    """Per (repeat, fold) unit, its test metrics averaged over its twins (a metric undefined in
    some twin: over the twins that have it; ``None`` if none)."""
    by_unit: dict[tuple[int, int], list[dict[str, float | None]]] = {}
    for row in rows:
        by_unit.setdefault((row["repeat"], row["fold"]), []).append(row["test"])
    out = []
    for tests in by_unit.values():
        mean: dict[str, float | None] = {}
        for key in tests[0]:
            vals = [m[key] for m in tests if m.get(key) is not None]
            mean[key] = _round(float(np.mean(vals))) if vals else None
        out.append(mean)
    return out


def log_curves(runs: Sequence[FoldRun], directory: Path) -> None:
    """Per-epoch projection curves through dvclive (one step per epoch; a metric per unit).

    ``save_dvc_exp=False, dvcyaml=None``: dvclive never writes dvc.yaml nor makes experiments;
    the curves are plain TSV files inside the stage's models output.
    """
    from dvclive import Live

    series: dict[str, np.ndarray] = {}
    for r in runs:
        if r.projection is not None:
            name = r.name
            series[f"{name}/projection/train_loss"] = r.projection.train_loss
            series[f"{name}/projection/val_loss"] = r.projection.val_loss
    if not series:
        return
    steps = max(len(v) for v in series.values())
    with Live(dir=str(directory), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        for step in range(steps):
            live.step = step  # set directly: next_step() would rewrite the summary every epoch
            for name, values in series.items():
                if step < len(values) and math.isfinite(float(values[step])):
                    live.log_metric(name, float(values[step]))


def test_embeddings_table(inputs: SetupInputs, run: FoldRun) -> pa.Table:
    """The test samples' embeddings (one unit's space) with class and box labels."""
    t = inputs.units[run.unit]
    te = t.role == "test"
    emb = np.asarray(run.test_embedding, np.float32)
    return pa.table({
        "sample_id": pa.array(list(inputs.sample_ids[te]), pa.string()),
        "repeat": pa.array(np.full(int(te.sum()), run.unit[0], np.int32)),
        "fold": pa.array(np.full(int(te.sum()), run.unit[1], np.int32)),
        "class_id": pa.array(t.class_id[te].astype(np.int32)),
        "box_label": pa.array(t.box_label[te].astype(np.int32)),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), emb.shape[1]),
    })


def run_train_stage(
    *,
    backbone: str,
    setups: Sequence[str],
    embeddings: str | Path,
    split: str | Path,
    scores: str | Path,
    out: str | Path,
    models: str | Path,
    train: TrainParams,
    heads: HeadsParams,
    sampling: SamplingParams | None,
    seed: int,
    masks: str | Path | None = None,
    samples: str | Path | None = None,
    progress: bool = True,
    retrieval_queries: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Stages ``train`` / ``train_tg``: every unit of one backbone × each of ``setups``.

    One process for all of a backbone's setups: the inputs are read once and TensorFlow starts
    once. Writes, per setup, into the folder ``out``: ``<setup>.json`` (results),
    ``<setup>.predictions.parquet`` (every unit's per-test-sample outputs, the paired
    statistics' input) and ``<setup>.test_embeddings.parquet`` (the first unit's test space);
    into ``models/<setup>/`` the projection weights and dvclive curves. Both folders appear
    only once complete. Every unit runs ``train.twins`` times (seed twins): the rows of the
    JSON and of the predictions carry ``twin``; the summary is over units of the twins' means.
    """
    from tgmatl.io import atomic_dir, write_json, write_parquet
    from tgmatl.versions import environment

    specs = [get_setup(s) for s in setups]
    if not specs:
        raise InputError("no setup to train (train.setups is empty)")
    sampled = any(s.uses_sampling for s in specs)
    if sampled and sampling is not None and sampling.scope == "dataset" and not masks:
        raise InputError(f"setups {', '.join(setups)} with sampling.scope=dataset need --masks")
    inputs = load_inputs(embeddings, split, scores, masks=masks if sampled else None,
                         samples=samples)
    env = environment()  # the versions behind these numbers (report.md lists them)
    out_all: dict[str, dict[str, Any]] = {}
    with atomic_dir(out) as res_dir, atomic_dir(models) as mod_dir:
        for setup in setups:
            results, runs = train_setup(inputs, setup, train, heads, sampling, seed,
                                        models_dir=mod_dir / setup, progress=progress,
                                        desc=f"{backbone}/{setup}",
                                        retrieval_queries=retrieval_queries)
            log_curves(runs, mod_dir / setup / "dvclive")
            results = {"backbone": backbone, **results, "environment": env}
            write_parquet(res_dir / f"{setup}.test_embeddings.parquet",
                          test_embeddings_table(inputs, runs[0]))
            write_parquet(res_dir / f"{setup}.predictions.parquet",
                          pd.concat([r.per_sample for r in runs], ignore_index=True))
            write_json(res_dir / f"{setup}.json", results)
            out_all[setup] = results
    return out_all
