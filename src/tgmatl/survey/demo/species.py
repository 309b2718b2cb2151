"""What each animal class looks like from above: body plan, size, coats, temperature.

Sizes are in metres at the ground and become pixels through ``demo.gsd_m``. The numbers are
rough nadir silhouettes of European livestock and game, chosen so that box geometry tells the
classes apart only partly: cows are the largest and moderately elongated, horses long and slim
(long neck and head), deer small and compact; calves, foals, lying animals and the random heading
(the box is the axis-aligned box of the rotated animal) make the distributions overlap.
A class name not in the table gets a body plan derived from its index in ``demo.classes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RGB = tuple[float, float, float]
Pattern = Literal["solid", "patches", "rump", "spots", "dapple"]


@dataclass(frozen=True)
class Coat:
    name: str
    weight: float  # relative frequency within the species
    base: RGB
    pattern: Pattern = "solid"
    second: RGB | None = None  # patch / rump / spot / dapple colour
    head: RGB | None = None  # head colour when it differs (white-faced breeds)
    mane: RGB | None = None  # mane and tail colour
    stripe: float = 0.0  # darkening along the spine


@dataclass(frozen=True)
class Species:
    body_len_m: float  # trunk, shoulder to rump
    body_len_cv: float  # log-normal spread of adult size
    width_ratio: float  # trunk width / trunk length
    neck: float  # visible neck length / trunk length
    neck_width: float  # neck width at the shoulders / trunk width (it narrows to the head)
    head: float  # head length / trunk length
    head_width: float  # head width / trunk width
    ears: float  # ear length / head length
    ear_angle: float  # degrees between the ear and the backward head axis
    tail: float  # visible tail length / trunk length
    tail_width: float  # tail width / trunk width
    taper: float  # shoulders narrower than hips
    height_m: float  # back height, sets the shadow length
    lying: float  # chance the animal lies down (shorter, wider, head turned)
    young: float  # chance of a calf / fawn / foal (scaled 0.55-0.75)
    heat: float  # coat surface temperature on the thermal scale [0, 1]
    coats: tuple[Coat, ...]


_COW = Species(
    body_len_m=1.75, body_len_cv=0.08, width_ratio=0.46, neck=0.14, neck_width=0.62,
    head=0.28, head_width=0.45,
    ears=0.34, ear_angle=80.0, tail=0.10, tail_width=0.07, taper=0.04, height_m=1.4,
    lying=0.25, young=0.12, heat=0.80,
    coats=(
        Coat("holstein", 0.35, (0.93, 0.92, 0.88), "patches", second=(0.07, 0.07, 0.07)),
        Coat("fleckvieh", 0.25, (0.93, 0.90, 0.84), "patches", second=(0.55, 0.30, 0.14),
             head=(0.94, 0.92, 0.86)),
        Coat("angus", 0.20, (0.09, 0.08, 0.08)),
        Coat("charolais", 0.20, (0.90, 0.86, 0.74), stripe=0.03),
    ),
)
_HORSE = Species(
    body_len_m=1.62, body_len_cv=0.07, width_ratio=0.34, neck=0.30, neck_width=0.62,
    head=0.34, head_width=0.42,
    ears=0.18, ear_angle=25.0, tail=0.26, tail_width=0.18, taper=0.06, height_m=1.6,
    lying=0.06, young=0.10, heat=0.83,
    coats=(
        Coat("chestnut", 0.30, (0.56, 0.29, 0.13), mane=(0.62, 0.36, 0.18)),
        Coat("bay", 0.30, (0.43, 0.25, 0.13), mane=(0.07, 0.06, 0.06)),
        Coat("grey", 0.20, (0.80, 0.79, 0.76), "dapple", second=(0.55, 0.55, 0.54),
             mane=(0.70, 0.70, 0.68)),
        Coat("palomino", 0.20, (0.84, 0.68, 0.42), mane=(0.93, 0.88, 0.76)),
    ),
)
_DEER = Species(
    body_len_m=1.05, body_len_cv=0.12, width_ratio=0.50, neck=0.12, neck_width=0.55,
    head=0.22, head_width=0.46,
    ears=0.45, ear_angle=38.0, tail=0.05, tail_width=0.10, taper=0.08, height_m=0.95,
    lying=0.15, young=0.10, heat=0.85,
    coats=(
        Coat("summer", 0.45, (0.58, 0.34, 0.17), "rump", second=(0.90, 0.86, 0.78), stripe=0.12),
        Coat("winter", 0.35, (0.43, 0.37, 0.31), "rump", second=(0.88, 0.86, 0.80), stripe=0.10),
        Coat("fallow", 0.20, (0.62, 0.42, 0.22), "spots", second=(0.92, 0.90, 0.84),
             stripe=0.15),
    ),
)

KNOWN: dict[str, Species] = {
    "cow": _COW, "cows": _COW, "cattle": _COW,
    "horse": _HORSE, "horses": _HORSE,
    "deer": _DEER, "roe_deer": _DEER, "red_deer": _DEER,
}

_GENERIC_COATS: tuple[RGB, ...] = (
    (0.52, 0.42, 0.30), (0.30, 0.27, 0.25), (0.74, 0.66, 0.52), (0.60, 0.36, 0.20),
    (0.85, 0.84, 0.80),
)


def species_for(name: str, index: int) -> Species:
    """The body plan of class ``name``; unknown names get one derived from ``index`` alone."""
    known = KNOWN.get(name.strip().lower())
    if known is not None:
        return known
    # deterministic from the index: sizes cycle through 5 steps, elongation through 4
    return Species(
        body_len_m=0.8 + 0.3 * (index % 5), body_len_cv=0.10,
        width_ratio=0.30 + 0.05 * ((index * 3) % 4), neck=0.15 + 0.05 * (index % 3),
        neck_width=0.5, head=0.25, head_width=0.55, ears=0.3, ear_angle=45.0, tail=0.15,
        tail_width=0.1,
        taper=0.06, height_m=0.7 + 0.2 * (index % 5), lying=0.1, young=0.1, heat=0.82,
        coats=(Coat("plain", 1.0, _GENERIC_COATS[index % len(_GENERIC_COATS)], stripe=0.08),),
    )


def max_extent_m(species: Species) -> float:
    """Upper bound of an animal's length (nose to tail tip) at +3 sd of size."""
    scale = 1.0 + 3.0 * species.body_len_cv
    return species.body_len_m * scale * (1.0 + species.neck + species.head + species.tail)
