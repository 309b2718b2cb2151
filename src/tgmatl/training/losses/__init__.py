"""Triplet losses of TG-MATL (METHOD.md Eqs. 1-4, 14) in TensorFlow / Keras 3.

Small pieces: :mod:`~tgmatl.training.losses.distances` (pairwise Euclidean, finite gradient at 0),
:mod:`~tgmatl.training.losses.miners` (which triplets), :mod:`~tgmatl.training.losses.reducers`
(how values become
one number), :mod:`~tgmatl.training.losses.triplet` (the pure losses),
:mod:`~tgmatl.training.losses.log_ratio` (log-ratio loss on continuous geometry, CMATL),
:mod:`~tgmatl.training.losses.weighting` (uncertainty weighting, GradNorm) and
:mod:`~tgmatl.training.losses.keras_losses` (``keras.losses.Loss`` wrappers, ``loss_for_setup``).
"""

from tgmatl.training.losses.distances import (
    l2_normalize,
    pairwise_distances,
    pairwise_squared_distances,
)
from tgmatl.training.losses.keras_losses import (
    SETUP_LOSSES,
    Y_COLUMNS,
    ClassTripletLoss,
    CMATLLoss,
    MATLLoss,
    TGMATLLoss,
    insert_mask,
    loss_for_setup,
    pack_targets,
    unpack_targets,
)
from tgmatl.training.losses.log_ratio import (
    LOG_RATIO_EPS,
    cmatl_loss,
    cmatl_task_losses,
    geometry_distances,
    log_ratio_loss,
)
from tgmatl.training.losses.miners import (
    anchor_negative_mask,
    anchor_positive_mask,
    hardest_negative,
    hardest_positive,
    masked_pair_distances,
    triplet_mask,
)
from tgmatl.training.losses.reducers import mean_over_positive, mean_over_valid
from tgmatl.training.losses.triplet import (
    batch_all_triplet_loss,
    batch_all_triplet_loss_explicit,
    batch_hard_triplet_loss,
    box_loss,
    class_loss,
    hinge_all_triplet_loss,
    hinge_all_triplet_loss_explicit,
    hinge_sum,
    matl_hinge_all,
    matl_loss,
    matl_task_losses,
    tg_matl_loss,
    tg_matl_task_losses,
    triplet_loss,
)
from tgmatl.training.losses.weighting import (
    UW_LOG_VAR_BOUNDS,
    gradnorm_update,
    uncertainty_weighted_loss,
    uncertainty_weights,
)

__all__ = [
    "CMATLLoss",
    "ClassTripletLoss",
    "LOG_RATIO_EPS",
    "MATLLoss",
    "SETUP_LOSSES",
    "TGMATLLoss",
    "UW_LOG_VAR_BOUNDS",
    "Y_COLUMNS",
    "anchor_negative_mask",
    "anchor_positive_mask",
    "batch_all_triplet_loss",
    "batch_all_triplet_loss_explicit",
    "batch_hard_triplet_loss",
    "box_loss",
    "class_loss",
    "cmatl_loss",
    "cmatl_task_losses",
    "geometry_distances",
    "gradnorm_update",
    "hardest_negative",
    "hardest_positive",
    "hinge_all_triplet_loss",
    "hinge_all_triplet_loss_explicit",
    "hinge_sum",
    "insert_mask",
    "l2_normalize",
    "log_ratio_loss",
    "loss_for_setup",
    "masked_pair_distances",
    "matl_hinge_all",
    "matl_loss",
    "matl_task_losses",
    "mean_over_positive",
    "mean_over_valid",
    "pack_targets",
    "pairwise_distances",
    "pairwise_squared_distances",
    "tg_matl_loss",
    "tg_matl_task_losses",
    "triplet_loss",
    "triplet_mask",
    "uncertainty_weighted_loss",
    "uncertainty_weights",
    "unpack_targets",
]
