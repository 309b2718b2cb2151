"""The trainable parts of every setup: projection head, classification head, regression head.

All three are small Keras models on a fixed-size input vector (a frozen backbone embedding, or
its projection). They are built once per process and re-initialised per fold with
:func:`init_weights` (numpy, seeded): the compiled training loop of :mod:`tgmatl.training` then
keeps one trace for every fold instead of re-tracing a fresh model each time.

- Projection head ``g_theta``: ``Dense(h_1, relu) -> ... -> Dense(h_last) -> L2 normalise``
  (``train.projection``, default ``[512, 128]``).
- Task heads: ``Standardize`` (the fold's training mean and scale of the input, frozen) ->
  optional ``Dense(heads.hidden, relu)`` -> ``Dense(out)``. The classification head outputs
  logits (softmax cross-entropy; :func:`softmax` turns them into probabilities); the regression
  head outputs the normalised box features directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="tgmatl")
class Standardize(keras.layers.Layer):
    """``(x - mean) * inv_scale`` with frozen per-feature statistics (set per fold)."""

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        dim = int(input_shape[-1])
        self.mean = self.add_weight(shape=(dim,), initializer="zeros", trainable=False, name="mean")
        self.inv_scale = self.add_weight(
            shape=(dim,), initializer="ones", trainable=False, name="inv_scale"
        )

    def call(self, x):
        return (x - self.mean) * self.inv_scale


def projection_head(input_dim: int, sizes: Sequence[int], name: str = "projection") -> keras.Model:
    """Dense layers (ReLU between them, none on the last) followed by L2 normalisation."""
    if not sizes:
        raise ValueError("projection_head: needs at least one layer size")
    inp = keras.Input((input_dim,), name="embedding")
    h = inp
    for i, units in enumerate(sizes):
        last = i == len(sizes) - 1
        h = keras.layers.Dense(units, activation=None if last else "relu", name=f"dense_{i}")(h)
    out = keras.layers.UnitNormalization(axis=-1, name="l2_normalise")(h)
    return keras.Model(inp, out, name=name)


def task_head(input_dim: int, outputs: int, hidden: int, name: str) -> keras.Model:
    """Standardised input, an optional hidden ReLU layer (``hidden > 0``), a linear output."""
    inp = keras.Input((input_dim,), name="features")
    h = Standardize(name="standardize")(inp)
    if hidden > 0:
        h = keras.layers.Dense(hidden, activation="relu", name="hidden")(h)
    out = keras.layers.Dense(outputs, name="out")(h)
    return keras.Model(inp, out, name=name)


def classification_head(input_dim: int, n_classes: int, hidden: int) -> keras.Model:
    """Softmax classifier; the model returns logits (see :func:`softmax`)."""
    return task_head(input_dim, n_classes, hidden, name="classifier")


def regression_head(input_dim: int, n_features: int, hidden: int) -> keras.Model:
    """Predicts the fold's min-max normalised box features (``feat_*``)."""
    return task_head(input_dim, n_features, hidden, name="regressor")


def init_weights(
    model: keras.Model,
    rng: np.random.Generator,
    x_train: np.ndarray | None = None,
    out_bias: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Fresh weights for ``model`` in ``model.get_weights()`` order.

    Kernels: Glorot uniform (Keras's default); biases: zeros. A :class:`Standardize` layer gets
    the mean and inverse standard deviation of ``x_train`` (required when the model has one;
    constant columns get scale 1). With ``out_bias`` the task head's ``out`` layer starts as the
    constant predictor: zero kernel, that bias (the training targets' mean for regression, the
    log class priors for classification), so a head starts at R² = 0 / the prior instead of a
    random guess and early stopping only ever has to improve on that.
    """
    weights: list[np.ndarray] = []
    for var in model.weights:
        shape = tuple(int(s) for s in var.shape)
        layer, leaf = _names(var.path)
        if out_bias is not None and layer == "out":
            if leaf == "kernel":
                weights.append(np.zeros(shape, np.float32))
            else:
                weights.append(np.broadcast_to(np.asarray(out_bias, np.float32), shape).copy())
        elif leaf == "kernel":
            fan_in, fan_out = shape[0], shape[-1]
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            weights.append(rng.uniform(-limit, limit, size=shape).astype(np.float32))
        elif leaf == "bias":
            weights.append(np.zeros(shape, np.float32))
        elif leaf in ("mean", "inv_scale"):
            if x_train is None:
                raise ValueError(f"init_weights: {model.name} standardises its input: pass x_train")
            x = np.asarray(x_train, np.float64)
            if leaf == "mean":
                weights.append(x.mean(axis=0).astype(np.float32))
            else:
                std = x.std(axis=0)
                weights.append(np.where(std > 1e-12, 1.0 / np.maximum(std, 1e-12), 1.0)
                               .astype(np.float32))
        else:
            raise ValueError(f"init_weights: no initialiser for weight {var.path}")
    return weights


def _names(path: str) -> tuple[str, str]:
    """(layer name, weight name) of a variable path such as ``classifier/out/kernel``."""
    parts = path.split("/")
    return (parts[-2] if len(parts) > 1 else ""), parts[-1]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
