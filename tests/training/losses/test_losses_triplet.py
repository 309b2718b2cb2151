"""The triplet losses against brute-force loops over every (a, p, n) and a hand-derived case."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf
from gradcheck import central_differences

from tgmatl.training.losses import (
    batch_all_triplet_loss,
    batch_all_triplet_loss_explicit,
    batch_hard_triplet_loss,
    hinge_all_triplet_loss,
    hinge_all_triplet_loss_explicit,
    matl_hinge_all,
    matl_loss,
    pairwise_distances,
    tg_matl_loss,
    triplet_mask,
)

S2 = np.sqrt(2.0)


# --- brute force ------------------------------------------------------------------------------
def _dist(emb: np.ndarray) -> np.ndarray:
    e = emb.astype(np.float64)
    return np.sqrt(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1))


def _masks(n, anchor_mask, negative_mask):
    am = np.ones(n, bool) if anchor_mask is None else np.asarray(anchor_mask, bool)
    nm = np.ones(n, bool) if negative_mask is None else np.asarray(negative_mask, bool)
    return am, nm


def brute_batch_all(emb, labels, margin, anchor_mask=None, negative_mask=None) -> float:
    d = _dist(emb)
    n = len(labels)
    am, nm = _masks(n, anchor_mask, negative_mask)
    values = []
    for a, p, q in itertools.product(range(n), repeat=3):
        pair = a != p and labels[a] == labels[p] and am[a] and am[p]
        if pair and labels[q] != labels[a] and nm[q]:
            values.append(max(0.0, d[a, p] - d[a, q] + margin))
    positive = [v for v in values if v > 0]
    return float(np.mean(positive)) if positive else 0.0


def brute_batch_hard(emb, labels, margin, anchor_mask=None, negative_mask=None) -> float:
    d = _dist(emb)
    n = len(labels)
    am, nm = _masks(n, anchor_mask, negative_mask)
    per_anchor = []
    for a in range(n):
        if not am[a]:
            continue
        pos = [d[a, p] for p in range(n) if p != a and labels[p] == labels[a] and am[p]]
        neg = [d[a, q] for q in range(n) if labels[q] != labels[a] and nm[q]]
        if pos and neg:
            per_anchor.append(max(0.0, max(pos) - min(neg) + margin))
    return float(np.mean(per_anchor)) if per_anchor else 0.0


KINDS = {  # name: (TensorFlow loss, brute-force reference)
    "all": (batch_all_triplet_loss, brute_batch_all),
    "all_explicit": (batch_all_triplet_loss_explicit, brute_batch_all),
    "hard": (batch_hard_triplet_loss, brute_batch_hard),
}


def brute(kind):
    return KINDS[kind][1]


def tf_loss(kind):
    return KINDS[kind][0]


def _case(seed: int, n: int = 10, d: int = 4, n_classes: int = 3, integer: bool = False):
    rng = np.random.default_rng(seed)
    if integer:  # small integer coordinates: many exactly equal distances (ties) and duplicates
        emb = rng.integers(-1, 2, size=(n, d)).astype(np.float32)
    else:
        emb = rng.normal(size=(n, d)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = rng.integers(0, n_classes, size=n)
    am = rng.random(n) < 0.6
    nm = rng.random(n) < 0.6
    return emb, labels, am, nm


# --- brute-force agreement ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force_random(kind, seed):
    emb, labels, am, nm = _case(seed)
    for margin in (0.1, 0.5):
        for a, q in [(None, None), (am, None), (am, nm), (None, nm)]:
            got = float(tf_loss(kind)(emb, labels, margin, anchor_mask=a, negative_mask=q))
            want = brute(kind)(emb, labels, margin, a, q)
            assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force_with_ties(kind, seed):
    """Integer coordinates give exact, repeated distances and duplicate points; margin 0 puts
    many triplets exactly on ``ℓ = 0``, which batch-all must not count."""
    emb, labels, am, nm = _case(seed, n=9, d=3, n_classes=2, integer=True)
    for margin in (0.0, 0.1):
        for a, q in [(None, None), (am, nm)]:
            got = float(tf_loss(kind)(emb, labels, margin, anchor_mask=a, negative_mask=q))
            want = brute(kind)(emb, labels, margin, a, q)
            assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("kind", list(KINDS))
def test_class_with_one_sample(kind):
    """A singleton class gives no anchor of its own but still serves as a negative."""
    emb, _, _, _ = _case(3, n=7)
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    got = float(tf_loss(kind)(emb, labels, 0.3))
    assert got == pytest.approx(brute(kind)(emb, labels, 0.3), rel=1e-5)
    assert got > 0


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize(
    "labels, anchor_mask, negative_mask",
    [
        ([0, 1, 2, 3], None, None),  # all singletons: no positive pair
        ([0, 0, 0, 0], None, None),  # one class: no negative
        ([0, 0, 1, 1], [0, 0, 0, 0], None),  # every sample masked out as anchor
        ([0, 0, 1, 1], None, [0, 0, 0, 0]),  # no sample allowed as negative
        ([0, 0, 1, 1], [1, 0, 0, 1], None),  # masked positives leave no valid pair
    ],
)
def test_no_valid_triplet_is_zero_not_nan(kind, labels, anchor_mask, negative_mask):
    emb = tf.Variable(_case(0, n=4)[0])
    with tf.GradientTape() as tape:
        loss = tf_loss(kind)(emb, labels, 0.2, anchor_mask=anchor_mask, negative_mask=negative_mask)
    grad = tape.gradient(loss, emb)
    assert float(loss) == 0.0
    assert grad is None or np.all(np.asarray(grad) == 0.0)


def test_satisfied_batch_is_zero():
    """Classes far apart: every triplet satisfies the margin, both losses are exactly 0."""
    emb = np.array([[1, 0], [1, 0.01], [-1, 0], [-1, 0.01]], np.float32)
    labels = [0, 0, 1, 1]
    assert float(batch_all_triplet_loss(emb, labels, 0.5)) == 0.0
    assert float(batch_hard_triplet_loss(emb, labels, 0.5)) == 0.0


# --- a case derived by hand ---------------------------------------------------------------------
# Five points on the unit circle; point 4 coincides with point 0 but has the other class.
HAND_EMB = np.array([[1, 0], [0, 1], [-1, 0], [0, -1], [1, 0]], np.float32)
HAND_Y = np.array([0, 0, 1, 1, 1])
HAND_Z = np.array([0, 1, 0, 1, 0])
HAND_MARGIN = 0.5


def test_hand_derived_batch_all_and_hard():
    """Distances (s = √2): points at 90° are s apart, opposite points 2, points 0 and 4 are 0:
    d01=s d02=2 d03=s d04=0 d12=s d13=2 d14=s d23=s d24=2 d34=s.  α = 0.5.

    Batch-all over classes y = [0,0,1,1,1]: 2·3 + 6·2 = 18 valid triplets.
      anchors of class 0: (0,1,n) n=2: s-2+α<0 → 0; n=3: α; n=4: s+α
                          (1,0,n) n=2: α; n=3: 0; n=4: α            → 4 positive, sum 2+s
      anchors of class 1: (2,3,n) 0, α   (2,4,n) α, 2.5-s   (3,2,n) α, 0   (3,4,n) α, 0
                          (4,2,n) 2.5, 2.5-s   (4,3,n) s+α, α       → 9 positive, sum 10.5-s
      mean over the 13 positive triplets = 12.5 / 13 (s cancels); over all 18 it would be less.
    Batch-hard: anchor 0: s - d04 + α = s+α; 1: s - s + α = α; 2: d24 - d21 + α = 2.5-s;
      3: s - s + α = α; 4: d42 - d40 + α = 2.5  → mean 6.5 / 5 = 1.3.
    """
    ba = float(batch_all_triplet_loss(HAND_EMB, HAND_Y, HAND_MARGIN))
    bh = float(batch_hard_triplet_loss(HAND_EMB, HAND_Y, HAND_MARGIN))
    assert ba == pytest.approx(12.5 / 13, rel=1e-6)
    assert bh == pytest.approx(1.3, rel=1e-6)
    assert int(tf.reduce_sum(tf.cast(triplet_mask(HAND_Y), tf.int32))) == 18


def test_hand_derived_hinge_all():
    """The validation criterion averages over all 18 valid triplets, satisfied ones too: the
    positive sum is 2+s (class-0 anchors) + 10.5-s (class-1 anchors) = 12.5, so 12.5/18.
    Box labels (see the MATL case): 14 triplets of value 2.5-s among 4·3 + 2·3 = 18 valid."""
    assert float(hinge_all_triplet_loss(HAND_EMB, HAND_Y, HAND_MARGIN)) == pytest.approx(
        12.5 / 18, rel=1e-6)
    got = float(matl_hinge_all(HAND_EMB, HAND_Y, HAND_Z, HAND_MARGIN, 0.25))
    assert got == pytest.approx(0.75 * 12.5 / 18 + 0.25 * 14 * (2.5 - S2) / 18, rel=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_hinge_all_matches_brute_force(seed):
    emb, labels = _case(seed)[:2]
    d = _dist(emb)
    n = len(labels)
    values = [max(0.0, d[a, p] - d[a, q] + 0.2)
              for a, p, q in itertools.product(range(n), repeat=3)
              if a != p and labels[a] == labels[p] and labels[q] != labels[a]]
    got = float(hinge_all_triplet_loss(emb, labels, 0.2))
    assert got == pytest.approx(np.mean(values), rel=1e-5)
    # it moves with every violation, unlike batch-all's mean over the violating ones
    assert got < float(batch_all_triplet_loss(emb, labels, 0.2))


def test_hand_derived_matl():
    """Box labels z = [0,1,0,1,0]: groups {0,2,4} and {1,3}; every cross-group distance is s.
    Positive pairs: (0,2),(2,0),(2,4),(4,2) at distance 2 → ℓ = 2-s+α = 2.5-s > 0 for both
    negatives; (0,4),(4,0) at distance 0 → 0-s+α < 0; (1,3),(3,1) at 2 → 2.5-s for all three
    negatives. 14 positive triplets, all 2.5-s, so L_box = 2.5-s.
    L_MATL(λ) = (1-λ)·12.5/13 + λ·(2.5-s); with λ = 0.25: 0.75·12.5/13 + 0.25·(2.5-s).
    """
    for lam in (0.0, 0.25, 0.5, 1.0):
        got = float(matl_loss(HAND_EMB, HAND_Y, HAND_Z, HAND_MARGIN, lam))
        assert got == pytest.approx((1 - lam) * 12.5 / 13 + lam * (2.5 - S2), rel=1e-6)


def test_hand_derived_tg_matl():
    """Sample 2 unselected (m = [1,1,0,1,1]), λ = 0 (class term only).
    negatives=all: class-0 anchors keep all 6 triplets (n ∈ {2,3,4}): α, s+α, α, α → sum 2+s;
      class-1 pairs among {3,4}: (3,4,0)=α (3,4,1)=0 (4,3,0)=s+α (4,3,1)=α → sum 1.5+s.
      (3.5 + 2s) / 7 = 0.5 + 2s/7.
    negatives=selected: class-0 anchors lose n=2: (0,1,3)=α (0,1,4)=s+α (1,0,3)=0 (1,0,4)=α;
      class 1 unchanged → (3 + 2s) / 6 = 0.5 + s/3.
    """
    m = np.array([1, 1, 0, 1, 1], np.float32)
    all_neg = float(tg_matl_loss(HAND_EMB, HAND_Y, HAND_Z, m, HAND_MARGIN, 0.0, "all"))
    sel_neg = float(tg_matl_loss(HAND_EMB, HAND_Y, HAND_Z, m, HAND_MARGIN, 0.0, "selected"))
    assert all_neg == pytest.approx(0.5 + 2 * S2 / 7, rel=1e-6)
    assert sel_neg == pytest.approx(0.5 + S2 / 3, rel=1e-6)


# --- MATL / TG-MATL compositions on random batches -------------------------------------------
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("negatives", ["all", "selected"])
def test_tg_matl_matches_brute_force(seed, negatives):
    emb, y, m, _ = _case(seed, n=10)
    z = np.random.default_rng(seed + 100).integers(0, 3, size=10)
    lam = 0.3
    nm = m if negatives == "selected" else None
    want = (1 - lam) * brute_batch_all(emb, y, 0.1, m, nm) + lam * brute_batch_all(
        emb, z, 0.1, m, nm
    )
    got = float(tg_matl_loss(emb, y, z, m.astype(np.float32), 0.1, lam, negatives))
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_tg_matl_all_selected_equals_matl():
    emb, y, _, _ = _case(5)
    z = np.arange(10) % 3
    ones = np.ones(10, np.float32)
    for negatives in ("all", "selected"):
        tg = float(tg_matl_loss(emb, y, z, ones, 0.1, 0.5, negatives))
        assert tg == pytest.approx(float(matl_loss(emb, y, z, 0.1, 0.5)), rel=1e-6)


def test_tg_matl_all_masked_out_is_zero():
    emb, y, _, _ = _case(2)
    zeros = np.zeros(10, np.float32)
    for negatives in ("all", "selected"):
        assert float(tg_matl_loss(emb, y, y, zeros, 0.1, 0.5, negatives)) == 0.0


def test_tg_matl_rejects_unknown_negatives():
    emb, y, m, _ = _case(0)
    with pytest.raises(ValueError, match="negatives"):
        tg_matl_loss(emb, y, y, m, 0.1, 0.5, "some")


def test_matl_hard_uses_batch_hard_terms():
    emb, y, _, _ = _case(4)
    z = np.arange(10) % 2
    want = 0.6 * brute_batch_hard(emb, y, 0.2) + 0.4 * brute_batch_hard(emb, z, 0.2)
    assert float(matl_loss(emb, y, z, 0.2, 0.4, hard=True)) == pytest.approx(want, rel=1e-5)


# --- gradients --------------------------------------------------------------------------------
def _grad(fn, emb):
    var = tf.Variable(emb)
    with tf.GradientTape() as tape:
        loss = fn(var)
    return loss, tape.gradient(loss, var)


@pytest.mark.parametrize(
    "fn",
    [
        lambda e: batch_all_triplet_loss(e, HAND_Y, HAND_MARGIN),
        lambda e: batch_hard_triplet_loss(e, HAND_Y, HAND_MARGIN),
        lambda e: matl_loss(e, HAND_Y, HAND_Z, HAND_MARGIN, 0.5),
        lambda e: tg_matl_loss(e, HAND_Y, HAND_Z, [1, 1, 0, 1, 1], HAND_MARGIN, 0.5, "all"),
        lambda e: tg_matl_loss(e, HAND_Y, HAND_Z, [1, 1, 0, 1, 1], HAND_MARGIN, 0.5, "selected"),
    ],
)
def test_gradients_finite_with_identical_points(fn):
    """Points 0 and 4 of the hand case coincide (distance 0, where sqrt' is infinite)."""
    loss, grad = _grad(fn, HAND_EMB)
    assert np.isfinite(float(loss))
    assert np.all(np.isfinite(np.asarray(grad)))
    assert np.any(np.asarray(grad) != 0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_gradient_matches_finite_differences(kind):
    """float64, random unit points (away from the relu / max kinks): analytic = numeric."""
    emb, y, am, nm = _case(7, n=8, d=3)
    emb = emb.astype(np.float64)

    def f(e):
        return tf_loss(kind)(e, y, 0.3, anchor_mask=am, negative_mask=nm)

    _, grad = _grad(f, emb)
    num = central_differences(f, emb)
    np.testing.assert_allclose(np.asarray(grad), num, atol=1e-6)


def test_pairwise_distances_gradient_at_zero_and_values():
    emb = np.array([[0.6, 0.8], [0.6, 0.8], [0.0, 1.0]], np.float32)
    d, grad = _grad(lambda e: tf.reduce_sum(pairwise_distances(e)), emb)
    d_np = np.asarray(pairwise_distances(emb))
    assert d_np[0, 1] == 0.0 and np.all(np.diag(d_np) == 0.0)
    np.testing.assert_allclose(d_np, _dist(emb), atol=1e-6)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_works_inside_tf_function():
    fn = tf.function(lambda e, y, m: tg_matl_loss(e, y, y, m, 0.1, 0.5, "all"))
    emb, y, m, _ = _case(1)
    got = float(fn(emb, y.astype(np.int32), m.astype(np.float32)))
    want = 0.5 * brute_batch_all(emb, y, 0.1, m) + 0.5 * brute_batch_all(emb, y, 0.1, m)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    "fn",
    [
        lambda e, y, z, m: batch_all_triplet_loss(e, y, 0.1),
        lambda e, y, z, m: batch_hard_triplet_loss(e, y, 0.1),
        lambda e, y, z, m: matl_loss(e, y, z, 0.1, 0.5),
        lambda e, y, z, m: tg_matl_loss(e, y, z, m, 0.1, 0.5, "all"),
        lambda e, y, z, m: tg_matl_loss(e, y, z, m, 0.1, 0.5, "selected"),
    ],
)
def test_xla_with_dynamic_batch(fn):
    """Keras jit-compiles train steps by default on GPU, with a dynamic batch dimension: the loss
    and its gradient must compile under XLA and give the eager values."""

    def step(e, y, z, m):
        with tf.GradientTape() as tape:
            tape.watch(e)
            value = fn(e, y, z, m)
        return value, tape.gradient(value, e)

    sig = [
        tf.TensorSpec([None, 4], tf.float32),
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([None], tf.float32),
    ]
    emb, y, m, _ = _case(6)
    args = (emb, y.astype(np.int32), (y[::-1] % 2).astype(np.int32), m.astype(np.float32))
    got, grad = tf.function(step, jit_compile=True, input_signature=sig)(*args)
    want, want_grad = step(*(tf.constant(a) for a in args))
    assert float(got) == pytest.approx(float(want), rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(want_grad), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_sorted_sums_equal_the_cube_in_value_and_gradient(seed):
    """batch-all and hinge-all by sorted counts (O(B² log B)) against the literal [B, B, B]
    cube, values and autodiff gradients, on a batch of 32 with masks (the training size)."""
    emb, y, am, nm = _case(seed, n=32, d=8)
    pairs = (
        (lambda e: batch_all_triplet_loss(e, y, 0.2, anchor_mask=am, negative_mask=nm),
         lambda e: batch_all_triplet_loss_explicit(e, y, 0.2, anchor_mask=am, negative_mask=nm)),
        (lambda e: hinge_all_triplet_loss(e, y, 0.2, am),
         lambda e: hinge_all_triplet_loss_explicit(e, y, 0.2, am)),
    )
    for fast, cube in pairs:
        (v1, g1), (v2, g2) = _grad(fast, emb), _grad(cube, emb)
        assert float(v1) > 0
        assert float(v1) == pytest.approx(float(v2), rel=1e-5)
        np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-4, atol=1e-6)


def test_sorted_sums_under_vectorized_map():
    """A batched run maps the loss over units (tf.vectorized_map): each unit's value as alone."""
    cases = [_case(s, n=16, d=4) for s in range(3)]
    emb = tf.constant(np.stack([c[0] for c in cases]))
    labels = tf.constant(np.stack([c[1] for c in cases]).astype(np.int32))
    got = tf.function(lambda e, y: tf.vectorized_map(
        lambda a: batch_all_triplet_loss(a[0], a[1], 0.2), (e, y)))(emb, labels)
    want = [float(batch_all_triplet_loss(c[0], c[1], 0.2)) for c in cases]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
