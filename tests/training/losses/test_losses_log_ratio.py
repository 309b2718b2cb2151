"""The log-ratio loss and CMATL against a brute-force loop over every (a, i, j) and a hand case."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from gradcheck import central_differences

from tgmatl.training.losses import (
    CMATLLoss,
    MATLLoss,
    batch_all_triplet_loss,
    cmatl_loss,
    cmatl_task_losses,
    geometry_distances,
    insert_mask,
    l2_normalize,
    log_ratio_loss,
    matl_loss,
    pack_targets,
    unpack_targets,
)


# --- brute force ------------------------------------------------------------------------------
def _sq(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def brute_log_ratio(emb, geometry, eps, squared=True, mask=None) -> float:
    """Mean over every ordered (a, i, j), all distinct and all selected, of
    (log (d_ai+ε)/(d_aj+ε) - log (D_ai+ε)/(D_aj+ε))²."""
    d, g = _sq(emb), _sq(geometry)
    if not squared:
        d, g = np.sqrt(d), np.sqrt(g)
    n = len(d)
    m = np.ones(n, bool) if mask is None else np.asarray(mask, bool)
    values = []
    for a, i, j in itertools.product(range(n), repeat=3):
        if len({a, i, j}) == 3 and m[a] and m[i] and m[j]:
            lhs = np.log(d[a, i] + eps) - np.log(d[a, j] + eps)
            rhs = np.log(g[a, i] + eps) - np.log(g[a, j] + eps)
            values.append((lhs - rhs) ** 2)
    return float(np.mean(values)) if values else 0.0


def _case(seed: int, n: int = 9, d: int = 4, k: int = 2):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, d))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    geo = rng.uniform(size=(n, k))
    labels = rng.integers(0, 3, size=n)
    mask = rng.random(n) < 0.7
    return emb.astype(np.float32), geo.astype(np.float32), labels, mask


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("squared", [True, False])
def test_matches_brute_force(seed, squared):
    emb, geo, _, mask = _case(seed)
    for eps in (1e-3, 1e-1):
        for m in (None, mask):
            got = float(log_ratio_loss(emb, geo, eps=eps, squared=squared, mask=m))
            want = brute_log_ratio(emb, geo, eps, squared, m)
            assert got == pytest.approx(want, rel=2e-5, abs=1e-6)


def test_duplicates_and_ties_match_brute_force():
    """Integer coordinates: repeated boxes (D = 0), repeated embeddings (d = 0), many equal
    distances on both sides."""
    rng = np.random.default_rng(3)
    emb = rng.integers(-1, 2, size=(8, 3)).astype(np.float32)
    geo = rng.integers(0, 2, size=(8, 2)).astype(np.float32)
    assert (_sq(geo)[~np.eye(8, dtype=bool)] == 0).any()  # some identical boxes
    for squared in (True, False):
        got = float(log_ratio_loss(emb, geo, eps=1e-3, squared=squared))
        assert got == pytest.approx(brute_log_ratio(emb, geo, 1e-3, squared), rel=1e-5)


# --- a case derived by hand ---------------------------------------------------------------------
def test_hand_derived():
    """e0 = (1,0), e1 = (0,1), e2 = (-1,0): squared d01 = 2, d02 = 4, d12 = 2.
    Geometry 0, 1, 3 (K = 1): squared D01 = 1, D02 = 9, D12 = 4.
    u = log d - log D: u01 = log 2, u02 = log 4/9, u12 = log 1/2.
    Anchor 0: (u01 - u02)² = (log 9/2)²; anchor 1: (u10 - u12)² = (log 4)²;
    anchor 2: (u20 - u21)² = (log 8/9)²; each twice (both orders) over 6 triplets:
    L = ((log 4.5)² + (log 4)² + (log 8/9)²) / 3. Unsquared distances halve every log: L / 4.
    """
    emb = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)
    geo = np.array([[0.0], [1.0], [3.0]], np.float32)
    want = (np.log(4.5) ** 2 + np.log(4.0) ** 2 + np.log(8 / 9) ** 2) / 3
    eps = 1e-9  # negligible against distances >= 1
    assert float(log_ratio_loss(emb, geo, eps=eps)) == pytest.approx(want, rel=1e-5)
    assert float(log_ratio_loss(emb, geo, eps=eps, squared=False)) == pytest.approx(
        want / 4, rel=1e-5
    )


def test_equal_geometry_distances_ask_for_equal_embedding_distances():
    """Three boxes pairwise equally far apart (target log-ratio 0 everywhere): an equilateral
    embedding has loss 0; a collinear one has the hand value
    (squared d01 = d12 = 2 - 2cos 90° = 2, d02 = 4) → residuals ±log 2 on anchors 0 and 2,
    0 on anchor 1: L = (2·(log 2)²·2) / 6 = 2 (log 2)² / 3."""
    geo = np.array([[0, 0], [1, 0], [0.5, np.sqrt(3) / 2]], np.float32)  # equilateral triangle
    angles = np.deg2rad([90, 210, 330])
    tri = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    assert float(log_ratio_loss(tri, geo, eps=1e-9)) == pytest.approx(0.0, abs=1e-10)
    line = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)
    got = float(log_ratio_loss(line, geo, eps=1e-9))
    assert got == pytest.approx(2 * np.log(2) ** 2 / 3, rel=1e-5)


def test_scale_invariance_and_squared_is_four_times():
    emb, geo, _, _ = _case(5)
    base = float(log_ratio_loss(emb, geo, eps=1e-9))
    assert float(log_ratio_loss(emb, 7.0 * geo, eps=1e-9)) == pytest.approx(base, rel=1e-4)
    plain = float(log_ratio_loss(emb, geo, eps=1e-9, squared=False))
    assert base == pytest.approx(4 * plain, rel=1e-4)


def test_fewer_than_three_samples_is_zero():
    emb, geo, _, _ = _case(0, n=4)
    assert float(log_ratio_loss(emb[:2], geo[:2])) == 0.0
    assert float(log_ratio_loss(emb, geo, mask=[1, 0, 0, 1])) == 0.0
    with pytest.raises(ValueError, match="eps"):
        log_ratio_loss(emb, geo, eps=0.0)
    with pytest.raises(ValueError, match="geometry"):
        geometry_distances(np.zeros(4, np.float32))


# --- zero distances: values and gradients stay finite -------------------------------------------
def _value_and_grad(fn, emb):
    var = tf.Variable(emb)
    with tf.GradientTape() as tape:
        loss = fn(var)
    return float(loss), np.asarray(tape.gradient(loss, var))


@pytest.mark.parametrize("squared", [True, False])
def test_identical_embeddings_and_boxes_are_finite(squared):
    emb, geo, _, _ = _case(1, n=6)
    emb[1] = emb[0]  # one duplicated embedding (d = 0)
    geo[3] = geo[2]  # one duplicated box (D = 0)
    geo[1] = geo[0]  # a pair that is identical in both spaces
    for e in (emb, np.repeat(emb[:1], 6, axis=0)):  # ... and a fully collapsed batch
        value, grad = _value_and_grad(
            lambda v: log_ratio_loss(v, geo, eps=1e-3, squared=squared), e  # noqa: B023
        )
        assert np.isfinite(value) and value > 0
        assert np.all(np.isfinite(grad))
        assert value == pytest.approx(brute_log_ratio(e, geo, 1e-3, squared), rel=1e-4)
    # the partly duplicated batch still gets a gradient
    _, grad = _value_and_grad(lambda v: log_ratio_loss(v, geo, squared=squared), emb)
    assert np.any(grad != 0)


def test_gradient_matches_finite_differences():
    emb, geo, _, _ = _case(2, n=6, d=3)
    emb = emb.astype(np.float64)

    def f(e):
        return log_ratio_loss(e, geo.astype(np.float64), eps=1e-3)

    _, grad = _value_and_grad(f, emb)
    num = central_differences(f, emb)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-6)


def test_xla_with_dynamic_batch():
    def step(e, y, g):
        with tf.GradientTape() as tape:
            tape.watch(e)
            value = cmatl_loss(e, y, g, 0.1, 0.5)
        return value, tape.gradient(value, e)

    sig = [tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32),
           tf.TensorSpec([None, 2], tf.float32)]
    emb, geo, y, _ = _case(6)
    args = (emb, y.astype(np.int32), geo)
    got, grad = tf.function(step, jit_compile=True, input_signature=sig)(*args)
    want, want_grad = step(*(tf.constant(a) for a in args))
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(want_grad), rtol=1e-4, atol=1e-6)


# --- CMATL -------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_cmatl_is_the_weighted_sum(seed):
    emb, geo, y, _ = _case(seed)
    for lam in (0.0, 0.3, 1.0):
        want = (1 - lam) * float(batch_all_triplet_loss(emb, y, 0.2)) + lam * brute_log_ratio(
            emb, geo, 1e-3
        )
        got = float(cmatl_loss(emb, y, geo, 0.2, lam, eps=1e-3))
        assert got == pytest.approx(want, rel=2e-5)
    tasks = np.asarray(cmatl_task_losses(emb, y, geo, 0.2, eps=1e-3))
    assert tasks[1] == pytest.approx(brute_log_ratio(emb, geo, 1e-3), rel=2e-5)
    with pytest.raises(ValueError, match="box_weight"):
        cmatl_loss(emb, y, geo, 0.2, 1.5)


# --- the Keras wrapper and the packing convention ------------------------------------------------
def test_packing_convention_extends_and_old_wrappers_ignore_features():
    emb, geo, y, mask = _case(0)
    z = np.arange(len(y)) % 3
    yt = pack_targets(y, z, mask, features=geo)
    assert yt.shape == (len(y), 5)
    c, b, m, f = (np.asarray(t) for t in unpack_targets(yt))
    np.testing.assert_array_equal(c, y)
    np.testing.assert_array_equal(b, z)
    np.testing.assert_array_equal(m, mask)
    np.testing.assert_array_equal(f, geo)
    # MATL reads only the first three columns
    three = pack_targets(y, z, mask)
    assert float(MATLLoss(0.2, 0.3)(yt, emb)) == float(MATLLoss(0.2, 0.3)(three, emb))
    # the loop's y (class, box, features) plus its weight vector give the same y_true
    loop_y = np.concatenate([np.stack([y, z], 1), geo], 1).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(insert_mask(loop_y, mask.astype(np.float32))), yt)
    with pytest.raises(ValueError, match="features"):
        pack_targets(y, z, mask, features=geo[:3])


def test_cmatl_wrapper_value_config_and_validation():
    emb, geo, y, _ = _case(4)
    loss = CMATLLoss(0.2, 0.4, eps=1e-3)
    yt = pack_targets(y, None, None, features=geo)
    want = float(cmatl_loss(np.asarray(l2_normalize(emb)), y, geo, 0.2, 0.4, eps=1e-3))
    assert float(loss(yt, emb)) == pytest.approx(want, rel=1e-6)
    cfg = loss.get_config()
    assert cfg["eps"] == 1e-3 and cfg["squared"] is True and cfg["box_weight"] == 0.4
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is CMATLLoss and restored.get_config() == cfg
    with pytest.raises(Exception, match="at least 4 columns"):
        loss(pack_targets(y), emb)
    for bad, kw in (("box_weight", {"box_weight": 2.0}), ("eps", {"eps": 0.0}),
                    ("margin", {"margin": -1.0})):
        args = {"margin": 0.1, "box_weight": 0.5, **kw}
        with pytest.raises(ValueError, match=bad):
            CMATLLoss(**args)


def test_cmatl_model_fit_lowers_the_loss():
    rng = np.random.default_rng(0)
    n = 48
    y = rng.integers(0, 3, n)
    geo = rng.uniform(size=(n, 2)).astype(np.float32)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[:, 0] += y
    x[:, 1:3] += 2 * geo
    yt = pack_targets(y, None, None, features=geo)
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8), keras.layers.UnitNormalization()]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=CMATLLoss(0.2, 0.5))
    before = model.evaluate(x, yt, batch_size=n, verbose=0)
    model.fit(x, yt, batch_size=16, epochs=15, verbose=0, shuffle=False)
    after = model.evaluate(x, yt, batch_size=n, verbose=0)
    assert np.isfinite(after) and after < before


def test_matl_task_losses_compose_matl():
    from tgmatl.training.losses import matl_task_losses, tg_matl_loss, tg_matl_task_losses

    emb, _, y, mask = _case(7, n=10)
    z = np.arange(10) % 3
    t = np.asarray(matl_task_losses(emb, y, z, 0.1))
    assert 0.7 * t[0] + 0.3 * t[1] == pytest.approx(float(matl_loss(emb, y, z, 0.1, 0.3)),
                                                    rel=1e-6)
    for neg in ("all", "selected"):
        t = np.asarray(tg_matl_task_losses(emb, y, z, mask, 0.1, neg))
        want = float(tg_matl_loss(emb, y, z, mask, 0.1, 0.3, neg))
        assert 0.7 * t[0] + 0.3 * t[1] == pytest.approx(want, rel=1e-6)
