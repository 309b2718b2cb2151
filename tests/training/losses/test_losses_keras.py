"""The Keras wrappers: same values as the pure functions, config round trip, ``model.fit``."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tgmatl.config import SamplingParams, TrainParams
from tgmatl.training.losses import (
    ClassTripletLoss,
    MATLLoss,
    TGMATLLoss,
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    l2_normalize,
    loss_for_setup,
    matl_loss,
    pack_targets,
    tg_matl_loss,
)

TRAIN = TrainParams(
    setups=("wtl", "cltl", "cltl_hard", "matl"), box_weight_grid=(0.25, 0.75), uw_lr=0.01,
    projection=(8,), lr=1e-3, batch_size=16, margin=0.2, box_weight=0.3, epochs=1, patience=1,
    min_delta=0.0, val_criterion="loss", gradnorm_alpha=1.5, gradnorm_lr=0.01, twins=1,
    unit_chunk_mb=256.0,
)
SAMPLING = SamplingParams(
    top_pct=0.5, random_pct=0.1, random="random", scope="dataset", negatives="selected"
)


def _data(n=48, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    z = rng.integers(0, 3, n)
    m = rng.random(n) < 0.5
    # inputs weakly tied to the labels, so a small projection can learn them
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, 0] += y
    x[:, 1] += z
    return x, y, z, m


WRAPPERS = [
    ClassTripletLoss(0.2),
    ClassTripletLoss(0.2, hard=True),
    MATLLoss(0.2, 0.3),
    TGMATLLoss(0.2, 0.3, "all"),
    TGMATLLoss(0.2, 0.3, "selected"),
]


def test_values_equal_pure_functions():
    x, y, z, m = _data(16)
    emb = np.asarray(l2_normalize(x))
    yt = pack_targets(y, z, m)
    expected = [
        batch_all_triplet_loss(emb, y, 0.2),
        batch_hard_triplet_loss(emb, y, 0.2),
        matl_loss(emb, y, z, 0.2, 0.3),
        tg_matl_loss(emb, y, z, m, 0.2, 0.3, "all"),
        tg_matl_loss(emb, y, z, m, 0.2, 0.3, "selected"),
    ]
    for loss, want in zip(WRAPPERS, expected, strict=True):
        assert float(loss(yt, x)) == pytest.approx(float(want), rel=1e-6)


def test_normalize_flag():
    x, y, z, m = _data(16)
    yt = pack_targets(y, z, m)
    raw = ClassTripletLoss(0.2, normalize=False)
    assert float(raw(yt, x)) == pytest.approx(float(batch_all_triplet_loss(x, y, 0.2)), rel=1e-6)


@pytest.mark.parametrize("loss", WRAPPERS, ids=lambda x: x.name)
def test_config_round_trip(loss):
    cfg = loss.get_config()
    clone = type(loss).from_config(cfg)
    assert clone.get_config() == cfg
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss) and restored.get_config() == cfg


@pytest.mark.parametrize("loss", WRAPPERS, ids=lambda x: x.name)
def test_model_fit_lowers_the_loss(loss):
    x, y, z, m = _data()
    yt = pack_targets(y, z, m)
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((x.shape[1],)), keras.layers.Dense(8), keras.layers.UnitNormalization()]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=loss)
    before = model.evaluate(x, yt, batch_size=len(x), verbose=0)
    model.fit(x, yt, batch_size=16, epochs=15, verbose=0, shuffle=False)
    after = model.evaluate(x, yt, batch_size=len(x), verbose=0)
    assert np.isfinite(after) and after < before


def test_rejects_sample_weights_and_bad_targets():
    x, y, z, m = _data(8)
    loss = MATLLoss(0.1, 0.5)
    with pytest.raises(ValueError, match="sample weights"):
        loss(pack_targets(y, z, m), x, sample_weight=np.ones(8))
    with pytest.raises(Exception, match="3 columns"):
        loss(np.stack([y, z], 1).astype(np.float32), x)


def test_constructor_validation():
    with pytest.raises(ValueError, match="margin"):
        ClassTripletLoss(-0.1)
    with pytest.raises(ValueError, match="box_weight"):
        MATLLoss(0.1, 1.5)
    with pytest.raises(ValueError, match="negatives"):
        TGMATLLoss(0.1, 0.5, "none")


def test_loss_for_setup():
    cltl = loss_for_setup("cltl", TRAIN)
    assert isinstance(cltl, ClassTripletLoss) and not cltl.hard and cltl.margin == 0.2
    assert loss_for_setup("cltl_hard", TRAIN).hard
    matl = loss_for_setup("matl", TRAIN)
    assert type(matl) is MATLLoss and matl.box_weight == 0.3
    tg = loss_for_setup("tg_matl", TRAIN, SAMPLING)
    assert isinstance(tg, TGMATLLoss) and tg.negatives == "selected" and tg.box_weight == 0.3
    with pytest.raises(ValueError, match="sampling"):
        loss_for_setup("tg_matl", TRAIN)
    with pytest.raises(ValueError, match="wtl"):
        loss_for_setup("wtl", TRAIN)
    with pytest.raises(ValueError, match="not one of"):
        loss_for_setup("other", TRAIN)


def test_model_fit_jit_compiled():
    """Keras jit-compiles on GPU by default ("auto"); the wrappers must survive XLA in fit."""
    x, y, z, m = _data()
    yt = pack_targets(y, z, m)
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((x.shape[1],)), keras.layers.Dense(8), keras.layers.UnitNormalization()]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.02), loss=TGMATLLoss(0.2, 0.3), jit_compile=True
    )
    # 48 samples in batches of 20: the last batch is smaller, so the batch size varies
    hist = model.fit(x, yt, batch_size=20, epochs=3, verbose=0, shuffle=False)
    assert np.all(np.isfinite(hist.history["loss"]))
