"""Training: the projection head and task heads of every setup, fold by fold.

- :mod:`~tgmatl.training.schedule`: seeds, class-balanced / shuffled batch plans.
- :mod:`~tgmatl.training.loop`: :class:`CompiledFit`, a whole training run in one graph call.
- :mod:`~tgmatl.training.combiners`: multi-task combiners of :class:`CompiledFit` (fixed weights,
  uncertainty weighting, GradNorm).
- :mod:`~tgmatl.training.inputs`: reading and cross-checking one backbone's parquet inputs.
- :mod:`~tgmatl.training.setups`: the setups' registry (loss, validation criterion, stage).
- :mod:`~tgmatl.training.folds`: one setup on every unit (repeat, fold), results and outputs
  (:func:`run_train_stage`, the ``train`` / ``train_tg`` stages).
"""

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
    unit_rng,
    val_bounds,
)
from tgmatl.training.setups import REGISTRY, Setup, get_setup

__all__ = [
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
    "unit_rng",
    "val_bounds",
]
