"""Deterministic synthetic drone survey: the pipeline's offline default data (stage ``demo``).

Nadir scenes of pasture (grass, bare soil, vehicle tracks, ponds, bushes) with cows, deer and
horses seen from above (or any class names: unknown ones get a body plan from their index),
written in AWIR's layout::

    classes.txt                    one class name a line; class id = line index
    <Class>/<scene>.jpg            RGB scene (``.tif`` GeoTIFF for a share of scenes, ``.png``
                                   with ``demo.image_format: png``), in the folder of the class
                                   most of its animals belong to
    <Class>/<scene>.txt            YOLO: ``class_id cx cy w h`` per animal (every class),
                                   normalised, 6 decimals; boxes are the whole animal's
                                   axis-aligned extent, at least ``margin_px`` inside the scene
    <Class>/<scene>_thermal.tif    ``demo.thermal: file``: single-band uint8, same size; same
                                   CRS and transform as its scene when that is a GeoTIFF

Thermal rule: ``demo.thermal: band`` stores thermal as a 4th band of the scene, which JPEG cannot
hold; so every scene must then be a GeoTIFF (``demo.geotiff_fraction: 1``) or a PNG
(``demo.image_format: png``; PNG readers call that band alpha). Params validation enforces it.
GeoTIFFs: EPSG:32633, north-up, ``demo.gsd_m`` pixels, scenes laid out along flight lines.

Determinism: one ``numpy`` SeedSequence from ``seed``, one child stream per scene (plus one for the
plan), writers without timestamps: same seed and params give byte-identical files, on every CPU:
no numpy transcendental ufunc or BLAS call decides a pixel (their SIMD kernels round differently
per CPU); :mod:`.exact` computes those functions from correctly rounded operations.

``demo.n_targets`` sets the size; scenes follow it (``round(n_targets / targets_per_scene)``).
"""

from tgmatl.survey.demo.survey import class_counts, generate_survey, plan_survey

__all__ = ["class_counts", "generate_survey", "plan_survey"]
