"""Training: the projection head and task heads of every setup, unit by unit (stages ``train``,
``train_tg``).

Takes one backbone's ``data/embeddings/<name>.parquet``, ``data/split.parquet``,
``data/scores.parquet``, ``samples.parquet`` and, for TG-MATL, ``data/masks.parquet``. Gives
``results/<backbone>/{train,tg}/<setup>.json`` (per-unit test metrics, curves, environment) with
``<setup>.predictions.parquet`` and ``<setup>.test_embeddings.parquet``, and the projections under
``models/<backbone>/``.

- :mod:`~tgmatl.training.losses`: triplet losses as small pieces (distances, miners, reducers,
  weighting) with thin Keras wrappers.
- :mod:`~tgmatl.training.models`: the projection head and the paper's MLP task heads.
- :mod:`~tgmatl.training.heads`: the probe task heads (regularised linear models).
- :mod:`~tgmatl.training.schedule`: seeds, class-balanced / shuffled batch plans.
- :mod:`~tgmatl.training.loop`: :class:`CompiledFit`, a whole training run in one graph call.
- :mod:`~tgmatl.training.batched`: :class:`BatchedFit`, every unit, seed twin and λ of a setup
  trained side by side in one compiled run (stacked weights, per-unit plans, Adam and early
  stopping); what the stages use.
- :mod:`~tgmatl.training.combiners`: multi-task combiners of :class:`CompiledFit` (fixed weights,
  uncertainty weighting, GradNorm).
- :mod:`~tgmatl.training.inputs`: reading and cross-checking one backbone's parquet inputs.
- :mod:`~tgmatl.training.setups`: the setups' registry (loss, validation criterion, stage).
- :mod:`~tgmatl.training.folds`: one setup on every unit (repeat, fold), results and outputs
  (:func:`run_train_stage`, the ``train`` / ``train_tg`` stages).
"""

from tgmatl.training.batched import BatchedFit, UnitPlan
from tgmatl.training.combiners import (
    COMBINERS,
    Combiner,
    FixedWeights,
    GradNorm,
    UncertaintyWeighting,
    combiner_for,
)
from tgmatl.training.folds import (
    TRAINED_SETUPS,
    FoldRun,
    HeadsRun,
    SetupTrainer,
    fold_roles,
    log_curves,
    run_train_stage,
    summarise,
    test_embeddings_table,
    train_setup,
)
from tgmatl.training.inputs import FoldTable, SetupInputs, Unit, load_inputs
from tgmatl.training.loop import CompiledFit, FitResult
from tgmatl.training.schedule import (
    VAL_CHUNK,
    class_balanced_batches,
    fold_rng,
    set_determinism,
    shuffled_batches,
    stratified_order,
    twin_rng,
    twin_seed,
    unit_rng,
    val_bounds,
)
from tgmatl.training.setups import REGISTRY, Setup, get_setup

__all__ = [
    "BatchedFit",
    "COMBINERS",
    "TRAINED_SETUPS",
    "VAL_CHUNK",
    "Combiner",
    "CompiledFit",
    "FitResult",
    "FixedWeights",
    "FoldRun",
    "FoldTable",
    "HeadsRun",
    "REGISTRY",
    "Setup",
    "SetupInputs",
    "SetupTrainer",
    "Unit",
    "UnitPlan",
    "GradNorm",
    "UncertaintyWeighting",
    "class_balanced_batches",
    "combiner_for",
    "fold_roles",
    "fold_rng",
    "get_setup",
    "load_inputs",
    "log_curves",
    "run_train_stage",
    "set_determinism",
    "shuffled_batches",
    "stratified_order",
    "summarise",
    "test_embeddings_table",
    "train_setup",
    "twin_rng",
    "twin_seed",
    "unit_rng",
    "val_bounds",
]
