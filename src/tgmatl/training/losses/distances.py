"""Pairwise Euclidean distances with a gradient that stays finite at zero distance.

The projection head L2-normalises its output, so embeddings lie on the unit sphere and distances are
in [0, 2]. The Gram form ``|a|² - 2a·b + |b|²`` is used (O(B²) memory instead of the O(B²D) of
explicit differences). ``sqrt`` has an infinite derivative at 0, which turns into NaN as soon as two
embeddings coincide (always on the diagonal, and for duplicates in a batch); distances whose
square is below ``eps`` are therefore set to exactly 0 with a zero gradient.
"""

from __future__ import annotations

import tensorflow as tf

# Squared distances below this count as 0. float32 round-off of the Gram form on unit vectors is
# ~1e-7, so this only catches true (numerical) duplicates.
EPS = 1e-12


def l2_normalize(emb: tf.Tensor) -> tf.Tensor:
    """Rows scaled to unit length (a zero row stays zero instead of becoming NaN)."""
    return tf.math.l2_normalize(emb, axis=-1, epsilon=1e-12)


def pairwise_squared_distances(emb: tf.Tensor) -> tf.Tensor:
    """[B, B] squared Euclidean distances, >= 0, exactly 0 on the diagonal."""
    emb = tf.convert_to_tensor(emb)
    gram = tf.matmul(emb, emb, transpose_b=True)
    sq = tf.linalg.diag_part(gram)
    d2 = tf.maximum(sq[:, None] - 2.0 * gram + sq[None, :], 0.0)
    # Round-off leaves ~1e-7 on the diagonal; a point's distance to itself is 0 by definition.
    # (tf.where, not tf.linalg.set_diag: set_diag's gradient fails to compile under XLA with a
    # dynamic batch size, and Keras jit-compiles train steps by default on GPU.)
    diag = tf.eye(tf.shape(emb)[0], dtype=tf.bool)
    return tf.where(diag, tf.zeros_like(d2), d2)


def pairwise_distances(emb: tf.Tensor, eps: float = EPS) -> tf.Tensor:
    """[B, B] Euclidean distances; gradient finite (0) where two embeddings coincide."""
    d2 = pairwise_squared_distances(emb)
    nonzero = d2 > eps
    # sqrt(max(d2, eps)) keeps the unused branch of tf.where finite, so its (masked) gradient
    # is 0 * finite rather than 0 * inf = NaN.
    return tf.where(nonzero, tf.sqrt(tf.maximum(d2, eps)), tf.zeros_like(d2))
