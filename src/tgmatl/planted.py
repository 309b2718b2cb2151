"""Surveys with a planted, known signal: samples (boxes, scenes, images) and their embeddings.

Pretrained weights cannot be had offline, and the demo's tiny random ViTs give uninformative
embeddings, so everything that needs *informative* embeddings (heads, statistics, setups) is
tested on these. The signal is explicit:

- class ``c`` of sample ``i`` moves its embedding by ``class_signal`` along the class's own
  direction ``q_c``;
- the standardised box geometry (log area, squareness) moves it by ``geometry_signal`` along
  two further directions;
- isotropic Gaussian noise of standard deviation ``noise`` in every dimension.

The directions are orthonormal (a random rotation), so the class means lie
``class_signal · √2`` apart. Box sizes depend on the class (as on real surveys and in the
demo), so geometry carries some information about the class, which is what TG-MATL's
mutual-information score measures.

Samples may share an image (``shared_image_fraction``): such twins get byte-identical
embeddings, as the ``isolate.policy: tile`` route gives samples whose targets lie in one tile.
Scenes hold one or several classes (``mixed_scene_fraction``). Deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# Per class: mean (log width, log height) in pixels and their spread; cycled for more classes.
_SHAPES = ((np.log(60.0), np.log(30.0)), (np.log(28.0), np.log(22.0)), (np.log(45.0), np.log(40.0)))
_SHAPE_SD = 0.25
TILE = 300


@dataclass(frozen=True)
class PlantedSurvey:
    samples: pd.DataFrame   # the samples.parquet contract (without files behind image_path)
    embeddings: np.ndarray  # [N, dim] float32, rows in ``samples`` order
    geometry: np.ndarray    # [N, 2] the standardised (log area, squareness) that was planted


def planted_survey(
    n_samples: int = 240,
    *,
    class_weights: Sequence[float] = (116, 51, 73),
    class_names: Sequence[str] | None = None,
    dim: int = 64,
    class_signal: float = 1.0,
    geometry_signal: float = 1.0,
    noise: float = 1.0,
    n_scenes: int = 60,
    mixed_scene_fraction: float = 0.5,
    shared_image_fraction: float = 0.0,
    scene_signal: float = 0.0,
    seed: int = 0,
) -> PlantedSurvey:
    """A survey of ``n_samples`` targets with the planted signal described in the module doc.

    ``scene_signal``: each scene also shifts its samples' embeddings along a random direction of
    that length (background shared within a scene: what a scene-grouped split guards against).
    """
    if n_samples < 2:
        raise ValueError(f"n_samples: need at least 2, got {n_samples}")
    weights = np.asarray(class_weights, np.float64)
    if weights.ndim != 1 or len(weights) < 2 or np.any(weights <= 0):
        raise ValueError(f"class_weights: need >= 2 positive weights, got {list(class_weights)}")
    n_classes = len(weights)
    names = list(class_names) if class_names is not None else [f"class{c}" for c in
                                                               range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"class_names: {len(names)} names for {n_classes} class weights")
    if dim < n_classes + 2:
        raise ValueError(f"dim: need >= {n_classes + 2} (class and geometry directions)")
    if not 1 <= n_scenes <= n_samples:
        raise ValueError(f"n_scenes: need 1..{n_samples}, got {n_scenes}")
    for key, v in (("mixed_scene_fraction", mixed_scene_fraction),
                   ("shared_image_fraction", shared_image_fraction)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{key}: need a value in [0, 1], got {v}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x706C616E74]))

    # classes in proportion to the weights (largest remainders), in a random order
    exact = weights / weights.sum() * n_samples
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact)[: n_samples - counts.sum()]] += 1
    y = rng.permutation(np.repeat(np.arange(n_classes), counts))

    # scenes: a pure scene holds one class; a mixed scene any
    n_mixed = int(round(mixed_scene_fraction * n_scenes))
    scene = np.empty(n_samples, np.int64)
    pure_class = rng.integers(n_classes, size=n_scenes)
    for i in range(n_samples):
        own = np.flatnonzero((pure_class == y[i]) & (np.arange(n_scenes) >= n_mixed))
        pool = np.concatenate([np.arange(n_mixed), own]) if n_mixed or len(own) else \
            np.arange(n_scenes)
        scene[i] = rng.choice(pool if len(pool) else np.arange(n_scenes))
    # every scene holds a sample: give empty scenes one sample from the fullest scene
    for s in np.flatnonzero(np.bincount(scene, minlength=n_scenes) == 0):
        fullest = np.argmax(np.bincount(scene, minlength=n_scenes))
        scene[rng.choice(np.flatnonzero(scene == fullest))] = s

    # boxes: class-dependent log-normal width and height, inside a TILE x TILE tile
    mu = np.array([_SHAPES[c % len(_SHAPES)] for c in y])
    wh = np.exp(mu + _SHAPE_SD * rng.standard_normal((n_samples, 2)))
    wh = np.clip(np.round(wh), 6, TILE // 2)
    x0 = rng.integers(0, TILE - wh[:, 0] + 1)
    y0 = rng.integers(0, TILE - wh[:, 1] + 1)
    w, h = wh[:, 0], wh[:, 1]
    geo = np.stack([np.log(w * h), 1.0 - np.minimum(w / h, h / w)], axis=1)
    geo = (geo - geo.mean(axis=0)) / np.maximum(geo.std(axis=0), 1e-12)

    # images: a share of samples is paired up with another of the same scene (one tile)
    image = np.arange(n_samples)
    n_shared = int(round(shared_image_fraction * n_samples / 2))
    free = list(rng.permutation(n_samples))
    done = 0
    while done < n_shared and free:
        i = free.pop()
        mate = next((j for j in free if scene[j] == scene[i]), None)
        if mate is None:
            continue
        free.remove(mate)
        image[mate] = image[i]
        done += 1

    # embeddings
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    x = class_signal * q[:, y].T + geometry_signal * geo @ q[:, n_classes:n_classes + 2].T
    if scene_signal:
        d = rng.standard_normal((n_scenes, dim))
        x = x + scene_signal * (d / np.linalg.norm(d, axis=1, keepdims=True))[scene]
    x = x + noise * rng.standard_normal((n_samples, dim))
    first = {}
    for i in range(n_samples):  # twins share the first member's embedding, byte for byte
        first.setdefault(image[i], i)
        x[i] = x[first[image[i]]]

    width = len(str(n_samples - 1))
    samples = pd.DataFrame({
        "sample_id": [f"s{i:0{width}d}" for i in range(n_samples)],
        "scene_id": [f"scene{s:03d}" for s in scene],
        "image_path": [f"images/img{k:0{width}d}.png" for k in image],
        "thermal_path": pd.Series([None] * n_samples, dtype=object),
        "class_name": [names[c] for c in y],
        "class_id": y.astype(np.int64),
        "xmin": x0.astype(np.float64), "xmax": (x0 + w).astype(np.float64),
        "ymin": y0.astype(np.float64), "ymax": (y0 + h).astype(np.float64),
        "tile_width": np.full(n_samples, TILE, np.int64),
        "tile_height": np.full(n_samples, TILE, np.int64),
        "bands": np.full(n_samples, 3, np.int64),
    })
    return PlantedSurvey(samples, x.astype(np.float32), geo)


def embeddings_table(sample_ids: Sequence[str], x: np.ndarray):
    """The ``<backbone>.parquet`` contract (``sample_id``, ``embedding`` fixed-size list)."""
    import pyarrow as pa

    x = np.ascontiguousarray(x, np.float32)
    return pa.table({
        "sample_id": pa.array(list(sample_ids), pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1]),
    })


def write_planted(survey: PlantedSurvey, samples_path: str | Path,
                  embeddings_path: str | Path) -> None:
    """Write ``samples.parquet`` and an embeddings parquet, so the stages can run on them."""
    from tgmatl.io import write_parquet

    write_parquet(samples_path, survey.samples)
    write_parquet(embeddings_path, embeddings_table(survey.samples["sample_id"],
                                                    survey.embeddings))
