"""Triplet losses of TG-MATL (METHOD.md Eqs. 1-4, 14) in TensorFlow / Keras 3.

Small pieces: :mod:`~tgmatl.losses.distances` (pairwise Euclidean, finite gradient at 0),
:mod:`~tgmatl.losses.miners` (which triplets), :mod:`~tgmatl.losses.reducers` (how values become
one number), :mod:`~tgmatl.losses.triplet` (the pure losses) and
:mod:`~tgmatl.losses.keras_losses` (``keras.losses.Loss`` wrappers, ``loss_for_setup``).
"""

from tgmatl.losses.distances import l2_normalize, pairwise_distances, pairwise_squared_distances
from tgmatl.losses.keras_losses import (
    SETUP_LOSSES,
    Y_COLUMNS,
    ClassTripletLoss,
    MATLLoss,
    TGMATLLoss,
    loss_for_setup,
    pack_targets,
)
from tgmatl.losses.miners import (
    anchor_negative_mask,
    anchor_positive_mask,
    hardest_negative,
    hardest_positive,
    masked_pair_distances,
    triplet_mask,
)
from tgmatl.losses.reducers import mean_over_positive, mean_over_valid
from tgmatl.losses.triplet import (
    batch_all_triplet_loss,
    batch_all_triplet_loss_explicit,
    batch_hard_triplet_loss,
    box_loss,
    class_loss,
    hinge_all_triplet_loss,
    matl_hinge_all,
    matl_loss,
    tg_matl_loss,
    triplet_loss,
)

__all__ = [
    "SETUP_LOSSES",
    "Y_COLUMNS",
    "ClassTripletLoss",
    "MATLLoss",
    "TGMATLLoss",
    "anchor_negative_mask",
    "anchor_positive_mask",
    "batch_all_triplet_loss",
    "batch_all_triplet_loss_explicit",
    "batch_hard_triplet_loss",
    "box_loss",
    "class_loss",
    "hardest_negative",
    "hardest_positive",
    "hinge_all_triplet_loss",
    "l2_normalize",
    "loss_for_setup",
    "masked_pair_distances",
    "matl_hinge_all",
    "matl_loss",
    "mean_over_positive",
    "mean_over_valid",
    "pack_targets",
    "pairwise_distances",
    "pairwise_squared_distances",
    "tg_matl_loss",
    "triplet_loss",
    "triplet_mask",
]
