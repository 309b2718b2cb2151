"""Image preprocessing for the frozen encoders, as TensorFlow ops (they run inside ``tf.data``).

The order is: decode PNG -> float in [0, 1] -> the family's mean/std -> square (``resize`` mode) ->
bicubic resize to the model's input size. Normalising *before* squaring means the padding of
``resize: pad`` is 0 after normalisation, i.e. the family's mean colour, which the encoder sees as
"nothing there"; bicubic resizing is linear, so it commutes with the per-channel normalisation.

- ``stretch``: resize the tile crop to ``size x size`` whatever its aspect ratio.
- ``crop``: centre-crop to a square of side ``min(h, w)``, then resize (drops the long side's ends).
- ``pad``: pad to a square of side ``max(h, w)`` (centred, mean colour), then resize (keeps all).

PNGs are decoded as 16 bit and scaled by 1/65535, which gives exactly ``v/255`` for 8-bit files and
the full range for 16-bit thermal. A single band is replicated to three channels.
"""

from __future__ import annotations

from typing import Literal

import tensorflow as tf

Resize = Literal["stretch", "crop", "pad"]

# ImageNet statistics (DINOv2 and MAE were trained with them) and OpenAI CLIP's own.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def decode_png(data: tf.Tensor) -> tf.Tensor:
    """PNG bytes -> float32 (H, W, C) in [0, 1], C as stored (1, 2, 3 or 4)."""
    img = tf.io.decode_png(data, channels=0, dtype=tf.uint16)
    return tf.cast(img, tf.float32) * (1.0 / 65535.0)


def to_three_channels(img: tf.Tensor) -> tf.Tensor:
    """Replicate a single band to RGB; three bands pass through (callers check the count)."""
    return tf.cond(
        tf.equal(tf.shape(img)[-1], 1),
        lambda: tf.tile(img[..., :1], [1, 1, 3]),
        lambda: img[..., :3],
    )


def normalize(img: tf.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> tf.Tensor:
    return (img - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def square(img: tf.Tensor, mode: Resize) -> tf.Tensor:
    """Make ``img`` (H, W, 3) square according to ``mode`` (identity for ``stretch``)."""
    if mode == "stretch":
        return img
    h, w = tf.shape(img)[0], tf.shape(img)[1]
    if mode == "crop":
        side = tf.minimum(h, w)
        return tf.image.crop_to_bounding_box(img, (h - side) // 2, (w - side) // 2, side, side)
    if mode == "pad":
        side = tf.maximum(h, w)
        return tf.image.pad_to_bounding_box(img, (side - h) // 2, (side - w) // 2, side, side)
    raise ValueError(f"unknown resize mode {mode!r}")


def resize(img: tf.Tensor, size: int) -> tf.Tensor:
    # Antialiasing matters: tiles are usually downscaled, and plain bicubic would alias.
    out = tf.image.resize(img, (size, size), method="bicubic", antialias=True)
    return tf.ensure_shape(out, (size, size, 3))


def preprocess(
    img: tf.Tensor, size: int, mode: Resize, mean: tuple[float, ...], std: tuple[float, ...]
) -> tf.Tensor:
    """Float (H, W, 3) in [0, 1] -> the encoder's input, (size, size, 3) float32."""
    return resize(square(normalize(img, mean, std), mode), size)
