"""One setup on every fold: projection head, task heads, test metrics, outputs.

Protocol (METHOD.md): fold ``f`` trains on ``~test & fold != f``, validates on ``fold == f`` and
reports on the held-out test split. The projection is selected by its validation loss over *all*
validation triplets (TG-MATL too: the un-masked MATL loss, since the masked one has no valid
triplet on a handful of validation samples). Heads train on the frozen projected (WTL: raw)
embeddings of the same fold and are selected by their validation loss.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tgmatl.config import HeadsParams, SamplingParams, TrainParams
from tgmatl.errors import InputError
from tgmatl.training.inputs import FoldTable, SetupInputs, load_inputs
from tgmatl.training.loop import CompiledFit, FitResult
from tgmatl.training.schedule import (
    class_balanced_batches,
    fold_rng,
    set_determinism,
    shuffled_batches,
)

TRAINED_SETUPS = ("cltl", "cltl_hard", "matl", "tg_matl")


@dataclass
class FoldRun:
    fold: int
    projection: FitResult | None
    classifier: FitResult
    regressor: FitResult
    metrics: dict[str, Any]
    test_embedding: np.ndarray  # [n_test, d] the space the heads and retrieval saw
    n_train: int
    n_val: int


def fold_roles(inputs: SetupInputs, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean (train, val, test) of fold ``f``: ``~test & fold != f``, ``fold == f``, ``test``."""
    tr = (~inputs.test) & (inputs.fold != f)
    va = inputs.fold == f
    te = inputs.test
    if tr.sum() < 2 or va.sum() < 1 or te.sum() < 1:
        raise InputError(f"fold {f}: needs >= 2 training, >= 1 validation and >= 1 test "
                         f"samples, got {tr.sum()}, {va.sum()}, {te.sum()}")
    return tr, va, te


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@functools.cache
def projection_trainer(setup: str, input_dim: int, train: TrainParams,
                       sampling: SamplingParams | None) -> CompiledFit:
    """The projection head and its compiled loop for a setup (built and traced once a process:
    every fold, and every backbone of the same width, reuses it)."""
    import tensorflow as tf

    from tgmatl import models
    from tgmatl.losses import loss_for_setup

    model = models.projection_head(input_dim, train.projection)
    loss = loss_for_setup(setup, train, sampling)
    # TG-MATL validates with the un-masked MATL loss on all validation triplets.
    vloss = loss_for_setup("matl", train, None) if setup == "tg_matl" else loss

    def train_loss(y, w, pred):
        return loss(tf.concat([y, w[:, None]], axis=1), pred)

    def valid_loss(y, w, pred):
        return vloss(tf.concat([y, w[:, None]], axis=1), pred)

    return CompiledFit(model, train_loss, train.lr, valid_loss, y_dim=2)


@functools.cache
def head_trainer(kind: str, input_dim: int, outputs: int, hidden: int, lr: float) -> CompiledFit:
    """A task head (``classifier``: softmax cross-entropy on logits; ``regressor``: MSE) and its
    compiled loop, cached like :func:`projection_trainer`."""
    import tensorflow as tf

    from tgmatl import models

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


class SetupTrainer:
    """One setup's models and compiled loops (cached per process); :meth:`run_fold` per fold."""

    def __init__(self, setup: str, input_dim: int, n_classes: int, n_features: int,
                 train: TrainParams, heads: HeadsParams, sampling: SamplingParams | None):
        if setup not in ("wtl", *TRAINED_SETUPS):
            raise ValueError(f"unknown setup {setup!r}")
        if setup == "tg_matl" and sampling is None:
            raise ValueError("setup tg_matl needs the sampling params")
        self.setup, self.train_p, self.heads_p, self.sampling = setup, train, heads, sampling
        self.projection = None
        head_dim = input_dim
        if setup != "wtl":
            self.proj_fit = projection_trainer(setup, input_dim, train,
                                               sampling if setup == "tg_matl" else None)
            self.projection = self.proj_fit.model
            head_dim = train.projection[-1]
        self.cls_fit = head_trainer("classifier", head_dim, n_classes, heads.hidden, heads.lr)
        self.reg_fit = head_trainer("regressor", head_dim, n_features, heads.hidden, heads.lr)
        self.classifier, self.regressor = self.cls_fit.model, self.reg_fit.model

    def _weights_schedule(self, batches: np.ndarray, t: FoldTable, tr: np.ndarray,
                          seed: int, fold: int) -> np.ndarray | None:
        """Per-batch-entry TG-MATL selection weight ``m_i`` (``None`` for other setups).

        ``sampling.scope``: ``dataset`` looks the fold's mask up (masks.parquet); ``batch`` (the
        authors' code) selects inside each mini-batch, seeded by (seed, fold, epoch, step).
        """
        if self.setup != "tg_matl":
            return None
        s = self.sampling
        if s.scope == "dataset":
            if t.mask is None:
                raise InputError("tg_matl with sampling.scope=dataset needs the masks file")
            return t.mask[tr][batches].astype(np.float32)
        from tgmatl.selection import derive_seed, select_mask

        scores, cls = t.score[tr], t.class_id[tr]
        out = np.empty(batches.shape, np.float32)
        for e in range(batches.shape[0]):
            for j in range(batches.shape[1]):
                idx = batches[e, j]
                out[e, j] = select_mask(scores[idx], cls[idx], s.top_pct, s.random_pct,
                                        random=s.random, seed=derive_seed(seed, fold, e, j))
        return out

    def run_fold(self, inputs: SetupInputs, f: int, seed: int) -> FoldRun:
        """Train fold ``f``'s projection (not for WTL), then its heads; test metrics."""
        from tgmatl import models

        t = inputs.folds[f]
        tr, va, _ = fold_roles(inputs, f)
        x = inputs.x
        proj_result = None
        if self.projection is not None:
            p = self.train_p
            rng = fold_rng(seed, f, "batches")
            batches = class_balanced_batches(t.class_id[tr], p.batch_size, p.epochs, rng)
            weights = self._weights_schedule(batches, t, tr, seed, f)
            y = np.stack([t.class_id, t.box_label], axis=1).astype(np.float32)
            init = models.init_weights(self.projection, fold_rng(seed, f, "projection"))
            proj_result = self.proj_fit.fit(init, x[tr], y[tr], x[va], y[va], batches, weights,
                                            p.epochs, p.patience, val_groups=t.class_id[va])
            z = self.proj_fit.predict(x)
        else:
            z = x
        return self.evaluate_space(inputs, f, z, seed, proj_result)

    def evaluate_space(self, inputs: SetupInputs, f: int, z: np.ndarray, seed: int,
                       projection: FitResult | None = None) -> FoldRun:
        """Train fold ``f``'s heads on the embeddings ``z`` (all samples, frozen) and compute
        the test metrics. Retrieval uses ``z`` as is when a projection made it, else
        L2-normalised."""
        from tgmatl import evaluation, models

        t = inputs.folds[f]
        tr, va, te = fold_roles(inputs, f)
        h = self.heads_p
        ntr = int(tr.sum())
        n_cls = len(inputs.class_names)
        counts = np.bincount(t.class_id[tr], minlength=n_cls)
        cls_init = models.init_weights(self.classifier, fold_rng(seed, f, "classify"), z[tr],
                                       out_bias=np.log((counts + 1.0) / (ntr + n_cls)))
        cls_res = self.cls_fit.fit(
            cls_init, z[tr], t.class_id[tr], z[va], t.class_id[va],
            shuffled_batches(ntr, h.batch_size, h.epochs, fold_rng(seed, f, "cls_batches")),
            None, h.epochs, h.patience)
        reg_init = models.init_weights(self.regressor, fold_rng(seed, f, "regress"), z[tr],
                                       out_bias=t.features[tr].mean(axis=0))
        reg_res = self.reg_fit.fit(
            reg_init, z[tr], t.features[tr], z[va], t.features[va],
            shuffled_batches(ntr, h.batch_size, h.epochs, fold_rng(seed, f, "reg_batches")),
            None, h.epochs, h.patience)
        logits = self.cls_fit.predict(z[te])
        feats = self.reg_fit.predict(z[te])
        space = z[te] if self.projection is not None else _l2(z[te])
        order = evaluation.neighbour_order(space)
        metrics = {
            **evaluation.classification_metrics(t.class_id[te], logits.argmax(axis=1),
                                                inputs.class_names),
            **evaluation.regression_metrics(t.features[te], feats, inputs.feature_names),
            **evaluation.retrieval_metrics(space, t.class_id[te], "class_", order),
            **evaluation.retrieval_metrics(space, t.box_label[te], "box_", order),
        }
        return FoldRun(f, projection, cls_res, reg_res, metrics, space, ntr, int(va.sum()))

    def save_fold(self, directory: Path, f: int) -> None:
        """Save the fold's (best) weights: ``fold_<f>.{projection,classifier,regressor}``."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.projection is not None:
            self.projection.save_weights(directory / f"fold_{f}.projection.weights.h5")
        self.classifier.save_weights(directory / f"fold_{f}.classifier.weights.h5")
        self.regressor.save_weights(directory / f"fold_{f}.regressor.weights.h5")


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


def summarise(folds: Sequence[dict[str, float | None]]) -> dict[str, float | None]:
    """``<metric>_mean`` / ``<metric>_std`` (sample std, ddof=1) over folds for every scalar
    metric; a metric undefined in some fold (``None``) is averaged over the folds that have it."""
    out: dict[str, float | None] = {}
    for key in folds[0]:
        vals = np.array([m[key] for m in folds if m.get(key) is not None], np.float64)
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
) -> tuple[dict[str, Any], list[FoldRun]]:
    """Train and evaluate ``setup`` on every fold; returns the results dict and the fold runs.

    With ``models_dir`` the fold weights are saved there as they are trained.
    """
    from tqdm.auto import tqdm

    set_determinism(seed)
    trainer = SetupTrainer(setup, inputs.x.shape[1], len(inputs.class_names),
                           len(inputs.feature_names), train, heads, sampling)
    runs: list[FoldRun] = []
    bar = tqdm(sorted(inputs.folds), desc=desc or setup, unit="fold", disable=not progress)
    for f in bar:
        run = trainer.run_fold(inputs, f, seed)
        runs.append(run)
        if models_dir is not None:
            trainer.save_fold(models_dir, f)
        if run.projection is not None:
            bar.set_postfix(epochs=run.projection.epochs, best=run.projection.best_epoch,
                            acc=f"{run.metrics['accuracy']:.3f}")
    fold_rows = []
    for r in runs:
        fold_rows.append({
            "fold": r.fold, "n_train": r.n_train, "n_val": r.n_val,
            "n_test": int(inputs.test.sum()),
            "projection": _fit_summary(r.projection),
            "classifier": _fit_summary(r.classifier),
            "regressor": _fit_summary(r.regressor),
            "test": _flat_metrics(r.metrics),
        })
    results = {
        "setup": setup,
        "classes": inputs.class_names,
        "features": inputs.feature_names,
        "n_folds": len(runs),
        "n_test": int(inputs.test.sum()),
        "folds": fold_rows,
        "summary": summarise([row["test"] for row in fold_rows]),
    }
    return results, runs


def log_curves(runs: Sequence[FoldRun], directory: Path) -> None:
    """Per-epoch curves through dvclive (one step per epoch; a metric per fold and loss).

    ``save_dvc_exp=False, dvcyaml=None``: dvclive never writes dvc.yaml nor makes experiments;
    the curves are plain TSV files inside the stage's models output.
    """
    from dvclive import Live

    series: dict[str, np.ndarray] = {}
    for r in runs:
        for part, res in (("projection", r.projection), ("classifier", r.classifier),
                          ("regressor", r.regressor)):
            if res is None:
                continue
            if part == "projection":
                series[f"fold_{r.fold}/{part}/train_loss"] = res.train_loss
            series[f"fold_{r.fold}/{part}/val_loss"] = res.val_loss
    steps = max(len(v) for v in series.values())
    with Live(dir=str(directory), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        for step in range(steps):
            live.step = step  # set directly: next_step() would rewrite the summary every epoch
            for name, values in series.items():
                if step < len(values) and math.isfinite(float(values[step])):
                    live.log_metric(name, float(values[step]))


def test_embeddings_table(inputs: SetupInputs, run: FoldRun) -> pa.Table:
    """The test samples' embeddings (fold ``run.fold``'s space) with class and box labels."""
    te = inputs.test
    t = inputs.folds[run.fold]
    emb = np.asarray(run.test_embedding, np.float32)
    return pa.table({
        "sample_id": pa.array(list(inputs.sample_ids[te]), pa.string()),
        "fold": pa.array(np.full(int(te.sum()), run.fold, np.int32)),
        "class_id": pa.array(t.class_id[te].astype(np.int32)),
        "box_label": pa.array(t.box_label[te].astype(np.int32)),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), emb.shape[1]),
    })


def run_train_stage(
    *,
    backbone: str,
    setup: str,
    embeddings: str | Path,
    split: str | Path,
    scores: str | Path,
    out: str | Path,
    models: str | Path,
    test_embeddings: str | Path,
    train: TrainParams,
    heads: HeadsParams,
    sampling: SamplingParams | None,
    seed: int,
    masks: str | Path | None = None,
    samples: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Stages ``train`` / ``train_tg``: every fold of one backbone × setup, outputs atomic.

    Writes the fold weights and dvclive curves under ``models``, the fold-0 test embeddings
    (the space the heads saw) to ``test_embeddings`` and the results JSON to ``out``.
    """
    from tgmatl.io import atomic_dir, write_json, write_parquet
    from tgmatl.versions import environment

    if setup == "tg_matl" and sampling is not None and sampling.scope == "dataset" and not masks:
        raise InputError("setup tg_matl with sampling.scope=dataset needs --masks")
    inputs = load_inputs(embeddings, split, scores,
                         masks=masks if setup == "tg_matl" else None, samples=samples)
    with atomic_dir(models) as tmp:
        results, runs = train_setup(inputs, setup, train, heads, sampling, seed, models_dir=tmp,
                                    progress=progress, desc=f"{backbone}/{setup}")
        log_curves(runs, tmp / "dvclive")
    # the versions behind these numbers (report.md lists them; tgmatl.versions)
    results = {"backbone": backbone, **results, "environment": environment()}
    write_parquet(test_embeddings, test_embeddings_table(inputs, runs[0]))
    write_json(out, results)
    return results
