"""The log-ratio loss (Kim et al., CVPR 2019, "Deep Metric Learning Beyond Binary Supervision")
on continuous box geometry, and CMATL: MATL with its discrete box term replaced by it.

For an anchor ``a`` and two other samples ``i != j`` the loss asks the embedding to reproduce the
*ratio* of geometry distances::

    ℓ(a, i, j) = ( log d(f_a, f_i) / d(f_a, f_j)  -  log D(g_a, g_i) / D(g_a, g_j) )²

Variant implemented (see the report of the ``lossmods`` branch):

- ``d`` and ``D`` are both *squared* Euclidean distances by default (``squared=True``), the
  paper's single ``D``; since ``log x² = 2 log x``, squaring both spaces multiplies the loss by
  exactly 4 (up to ``eps``) and leaves its minimisers unchanged. ``squared=False`` uses plain
  Euclidean distances in both spaces.
- Dense triplets within the batch: *every* sample is an anchor and every ordered pair ``(i, j)``
  of two other samples counts (``a, i, j`` distinct), averaged over all of them. (The paper's
  dense triplet mining builds each mini-batch around one anchor and its label neighbours; the
  batches here are class-balanced, so every sample takes the anchor role instead.)
- ``log(x + eps)`` in both spaces: finite where a distance is 0 (identical boxes, identical
  embeddings), with a gradient bounded by ``1 / eps``. A zero geometry distance then asks for an
  embedding distance near ``eps`` rather than for an infinite log-ratio; ``eps`` also sets the
  scale below which two distances count as "equal". Equal geometry distances
  (``D_ai = D_aj``) give a target log-ratio of 0: the anchor should be as far from ``i`` as
  from ``j``.

With ``u_ai = log(d_ai + eps) - log(D_ai + eps)`` the residual is ``u_ai - u_aj``, so the sum
over ordered pairs of an anchor is ``2 n Σ_i (u_ai - ū_a)²`` over its ``n`` partners: O(B²)
memory instead of the O(B³) of explicit triplets (centring first keeps it exact in float32).
"""

from __future__ import annotations

import tensorflow as tf

from tgmatl.training.losses.distances import pairwise_distances, pairwise_squared_distances
from tgmatl.training.losses.miners import as_bool_mask
from tgmatl.training.losses.triplet import batch_all_triplet_loss

# Added inside both logs. Squared distances are in [0, 4] on the unit sphere and in [0, K] for K
# min-max normalised box features, so 1e-3 treats geometry differences below ~3% of a feature's
# range as ties and caps a target log-ratio at about log(K / 1e-3).
LOG_RATIO_EPS = 1e-3


def geometry_distances(geometry: tf.Tensor, squared: bool = True) -> tf.Tensor:
    """[B, B] (squared) Euclidean distances between the rows of the [B, K] geometry features.

    Explicit differences (K is small), so identical boxes give exactly 0. Labels carry no
    gradient.
    """
    g = tf.stop_gradient(tf.convert_to_tensor(geometry))
    if g.shape.rank != 2:
        raise ValueError(f"geometry: expected a [B, K] matrix, got shape {g.shape}")
    d2 = tf.reduce_sum(tf.square(g[:, None, :] - g[None, :, :]), axis=-1)
    return d2 if squared else tf.sqrt(d2)


def log_ratio_loss(
    emb: tf.Tensor,
    geometry: tf.Tensor,
    eps: float = LOG_RATIO_EPS,
    squared: bool = True,
    mask: tf.Tensor | None = None,
) -> tf.Tensor:
    """Mean log-ratio loss over every valid dense triplet ``(a, i, j)`` of the batch.

    ``emb`` [B, D] embeddings, ``geometry`` [B, K] continuous box features; ``mask`` [B] bool or
    0/1 restricts every role to the selected samples (``None``: all). 0.0 when fewer than three
    samples take part.
    """
    if eps <= 0:
        raise ValueError(f"eps: {eps} must be > 0")
    emb = tf.convert_to_tensor(emb)
    dtype = emb.dtype
    d = pairwise_squared_distances(emb) if squared else pairwise_distances(emb)
    geo = tf.cast(geometry_distances(tf.cast(geometry, dtype), squared), dtype)
    eps = tf.constant(eps, dtype)  # (tf.cast of a Python float would round via float32)
    u = tf.math.log(d + eps) - tf.math.log(geo + eps)

    n_rows = tf.shape(emb)[0]
    used = as_bool_mask(mask, tf.zeros([n_rows], tf.int32))
    distinct = tf.logical_not(tf.eye(n_rows, dtype=tf.bool))
    partner = used[:, None] & used[None, :] & distinct  # [a, i]: i is a partner of anchor a
    w = tf.cast(partner, dtype)
    n = tf.reduce_sum(w, axis=1)  # partners per anchor (0 for an unused anchor)
    mean_u = tf.math.divide_no_nan(tf.reduce_sum(w * u, axis=1), n)
    # tf.where, not w * (...): an unused entry's u may be anything finite, but keep it out exactly
    centred = tf.where(partner, u - mean_u[:, None], tf.zeros_like(u))
    per_anchor = 2.0 * n * tf.reduce_sum(tf.square(centred), axis=1)  # Σ over ordered (i, j)
    triplets = tf.reduce_sum(n * (n - 1.0))
    return tf.math.divide_no_nan(tf.reduce_sum(per_anchor), triplets)


def cmatl_task_losses(
    emb: tf.Tensor,
    class_labels: tf.Tensor,
    geometry: tf.Tensor,
    margin: float,
    eps: float = LOG_RATIO_EPS,
    squared: bool = True,
    valid: tf.Tensor | None = None,
) -> tf.Tensor:
    """[2] task losses ``(L_cls, L_geo)``: batch-all class triplets and the log-ratio loss;
    ``valid`` [B] (None: all) restricts every role of both (padding of a batched run)."""
    l_cls = batch_all_triplet_loss(emb, class_labels, margin, anchor_mask=valid,
                                   negative_mask=valid)
    l_geo = log_ratio_loss(emb, geometry, eps=eps, squared=squared, mask=valid)
    return tf.stack([l_cls, l_geo])


def cmatl_loss(
    emb: tf.Tensor,
    class_labels: tf.Tensor,
    geometry: tf.Tensor,
    margin: float,
    box_weight: float,
    eps: float = LOG_RATIO_EPS,
    squared: bool = True,
) -> tf.Tensor:
    """``L_CMATL = (1 - λ)·L_cls + λ·L_geo``, ``λ = box_weight`` (continuous-label MATL)."""
    if not 0.0 <= box_weight <= 1.0:
        raise ValueError(f"box_weight: {box_weight} must be in [0, 1]")
    emb = tf.convert_to_tensor(emb)
    lam = tf.constant(box_weight, emb.dtype)
    l_cls = batch_all_triplet_loss(emb, class_labels, margin)
    l_geo = log_ratio_loss(emb, geometry, eps=eps, squared=squared)
    return (1.0 - lam) * l_cls + lam * l_geo
