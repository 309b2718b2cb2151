"""Animals, bushes and their shadows, each drawn once on a small local patch.

A sprite is a square patch centred on its object: coverage ``alpha``, colour ``rgb``, surface
temperature ``heat``. Scenes paste sprites where they are placed, so no per-animal work touches the
full scene. Shading comes from a height field (a dome per body part) lit by the scene's sun, which
is what makes a flat ellipse read as a back seen from above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from tgmatl.survey.demo.exact import F64, gauss, sincos
from tgmatl.survey.demo.noise import F32, ellipse_alpha, fbm, smooth_step, value_noise
from tgmatl.survey.demo.species import Coat, Species


@dataclass(frozen=True)
class Sun:
    azimuth: float  # radians, image frame (x right, y down): direction *towards* the sun
    elevation: float  # radians above the horizon

    def vector(self) -> np.ndarray:
        ce = math.cos(self.elevation)
        return np.array(
            [ce * math.cos(self.azimuth), ce * math.sin(self.azimuth), math.sin(self.elevation)],
            dtype=F32,
        )

    def shadow_offset(self, height_px: float) -> tuple[float, float]:
        """(dx, dy) of the shadow of a point ``height_px`` above the ground."""
        length = height_px / math.tan(self.elevation)
        return -length * math.cos(self.azimuth), -length * math.sin(self.azimuth)


@dataclass
class Sprite:
    alpha: np.ndarray  # [S, S] coverage in [0, 1]
    rgb: np.ndarray  # [S, S, 3]
    heat: np.ndarray  # [S, S]
    height_px: float  # top height above the ground, for the shadow
    feet: np.ndarray  # [k, 2] (x, y) of feet relative to the patch centre (standing animals)
    belly: float = 0.5  # lowest casting height as a share of height_px
    leg_px: float = 1.0  # leg radius, for the leg shadows

    @property
    def size(self) -> int:
        return self.alpha.shape[0]

    @property
    def mask(self) -> np.ndarray:
        return self.alpha > 0.5


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.arange(size, dtype=F32) + F32(0.5) - F32(size / 2)
    return np.meshgrid(c, c)  # x (columns), y (rows), origin at the patch centre


def _local(x: np.ndarray, y: np.ndarray, cx: float, cy: float, angle: float):
    ca, sa = F32(math.cos(angle)), F32(math.sin(angle))
    dx, dy = x - F32(cx), y - F32(cy)
    return dx * ca + dy * sa, -dx * sa + dy * ca


def _dome(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    return np.sqrt(np.clip(1 - (u / F32(a)) ** 2 - (v / F32(b)) ** 2, 0.0, 1.0))


def _lambert(height: np.ndarray, sun: Sun) -> np.ndarray:
    """Brightness of a height field lit by ``sun``, 1.0 for flat ground."""
    gy, gx = np.gradient(height)
    s = sun.vector()
    # written out, not ``n @ s`` / np.linalg.norm: BLAS rounds differently per CPU kernel
    dot = -gx * s[0] - gy * s[1] + s[2]
    return np.clip(dot / np.sqrt(gx * gx + gy * gy + 1) / s[2], 0.4, 1.15).astype(F32)


def _pick_coat(rng: np.random.Generator, coats: tuple[Coat, ...]) -> Coat:
    w = np.array([c.weight for c in coats], dtype=float)
    return coats[int(rng.choice(len(coats), p=w / w.sum()))]


def render_animal(
    rng: np.random.Generator, sp: Species, heading: float, gsd_m: float, sun: Sun
) -> Sprite:
    """One animal seen from above, heading ``heading`` radians (image frame), at a random size,
    posture and coat of its species."""
    scale = math.exp(rng.normal(0.0, sp.body_len_cv))
    if rng.random() < sp.young:
        scale *= rng.uniform(0.55, 0.75)
    length = sp.body_len_m * scale / gsd_m
    width = length * sp.width_ratio * rng.uniform(0.92, 1.08)
    lying = rng.random() < sp.lying
    height = sp.height_m * scale / gsd_m
    if lying:  # legs tucked: shorter, wider, low; head turned to the side, tail hidden
        length, width, height = length * 0.82, width * 1.15, height * 0.5
        turn = math.radians(rng.uniform(40, 110)) * rng.choice([-1.0, 1.0])
        neck_fs, head_fs, tail = 0.8, rng.uniform(0.8, 1.0), 0.0
    else:
        turn = math.radians(float(np.clip(rng.normal(0.0, 20.0), -55, 55)))
        grazing = rng.random() < 0.5  # head down: neck and head foreshortened from above
        neck_fs = rng.uniform(0.45, 0.75) if grazing else rng.uniform(0.85, 1.0)
        head_fs = rng.uniform(0.6, 0.85) if grazing else rng.uniform(0.9, 1.0)
        tail = sp.tail * length
    a, b = length / 2, width / 2
    neck_len = sp.neck * length * neck_fs
    head_len = sp.head * length * head_fs
    head_w = sp.head_width * width
    neck_base, neck_top = sp.neck_width * width, 0.85 * head_w
    neck_w = 0.5 * (neck_base + neck_top)
    neck_k = (neck_base - neck_top) / (neck_base + neck_top)  # taper towards the head

    # part placement in the animal frame (u forward, v to the animal's right)
    p0 = np.array([0.85 * a, 0.0])
    d1 = np.array([math.cos(0.6 * turn), math.sin(0.6 * turn)])
    d2 = np.array([math.cos(turn), math.sin(turn)])
    p1 = p0 + neck_len * d1
    neck_c = p0 + (0.5 * neck_len - 0.15 * a) * d1  # the neck starts inside the shoulders
    neck_half = 0.5 * neck_len + 0.15 * a + 0.1 * head_len
    head_c = p1 + 0.42 * head_len * d2
    tail_ang = math.pi + math.radians(rng.normal(0.0, 15.0))
    dt = np.array([math.cos(tail_ang), math.sin(tail_ang)])
    tail_c = np.array([-0.92 * a, 0.0]) + 0.5 * tail * dt
    ear_len = sp.ears * head_len / max(head_fs, 0.6)
    reach = max(
        math.hypot(*head_c) + 0.5 * head_len + ear_len,
        math.hypot(*tail_c) + 0.5 * tail,
        math.hypot(a, b),
    )
    size = 2 * math.ceil(reach) + 6
    x, y = _grid(size)
    u, v = _local(x, y, 0.0, 0.0, heading)

    # coverage and height per part
    vt = v / (1 - F32(sp.taper) * np.clip(u / F32(a), -1, 1))
    body = ellipse_alpha(u, vt, a, b, power_=2.7)
    hgt = _dome(u, vt, a * 1.05, b * 1.05) * F32(b)
    nu, nv = _local(u, v, *neck_c, 0.6 * turn)
    nv = nv / (1 - F32(neck_k) * np.clip(nu / F32(neck_half), -1, 1))
    neck = ellipse_alpha(nu, nv, neck_half, 0.5 * neck_w, power_=2.4)
    hgt = np.maximum(hgt, _dome(nu, nv, neck_half * 1.05, 0.55 * neck_w) * F32(0.5 * neck_w))
    hu, hv = _local(u, v, *head_c, turn)
    hv_t = hv / (1 - F32(0.3) * np.clip(hu / F32(0.5 * head_len), -1, 1))  # narrower muzzle
    head = ellipse_alpha(hu, hv_t, 0.5 * head_len, 0.5 * head_w, power_=2.3)
    hgt = np.maximum(hgt, _dome(hu, hv_t, 0.55 * head_len, 0.55 * head_w) * F32(0.35 * head_w))
    ears = np.zeros_like(body)
    if ear_len > 1.0:
        base = head_c - 0.3 * head_len * d2
        perp = np.array([-d2[1], d2[0]])
        for side in (-1.0, 1.0):
            ang = turn + math.pi - side * math.radians(sp.ear_angle)
            de = np.array([math.cos(ang), math.sin(ang)])
            c = base + side * 0.42 * head_w * perp + 0.5 * ear_len * de
            eu, ev = _local(u, v, *c, ang)
            ears = np.maximum(ears, ellipse_alpha(eu, ev, 0.5 * ear_len, max(0.3 * ear_len, 0.8)))
    tail_a = np.zeros_like(body)
    if tail > 1.0:
        tu, tv = _local(u, v, *tail_c, tail_ang)
        tail_a = ellipse_alpha(tu, tv, 0.5 * tail, max(0.5 * sp.tail_width * width, 0.8))
    alpha = np.maximum.reduce([body, neck, head, ears, tail_a])

    # colour: the coat pattern over the whole animal, then head / mane / tail colours
    coat = _pick_coat(rng, sp.coats)
    rgb = _coat_rgb(rng, coat, u, v, a, b, size)
    head_only = np.clip(np.maximum(head, ears) - body, 0, 1)[..., None]
    if coat.head is not None:
        rgb += head_only * (np.array(coat.head, F32) - rgb)
    mane_rgb = np.array(coat.mane if coat.mane is not None else coat.base, F32)
    if coat.mane is not None:
        mane = neck * gauss(nv / F32(0.14 * neck_w)).astype(F32) * F32(0.75)
        rgb += (mane * (1 - head))[..., None] * (mane_rgb - rgb)
    rgb += tail_a[..., None] * (mane_rgb * F32(0.8) - rgb)
    shade = _lambert(hgt, sun)
    rgb = np.clip(rgb * (F32(0.35) + F32(0.65) * shade)[..., None], 0, 1)

    # surface temperature: head and trunk warmest; ears and tail cooler; dark coats absorb sun
    lum = rgb[..., 0] * F32(0.3) + rgb[..., 1] * F32(0.59) + rgb[..., 2] * F32(0.11)
    heat = F32(sp.heat + rng.normal(0.0, 0.02)) + F32(0.04) * (1 - lum) + F32(0.04) * (shade - 1)
    heat += F32(0.04) * head - F32(0.08) * np.maximum(ears - head, 0) - F32(0.1) * tail_a

    feet = np.zeros((0, 2))
    if not lying:
        fu = np.array([0.62, 0.62, -0.62, -0.62]) * a
        fv = np.array([-0.55, 0.55, -0.55, 0.55]) * b
        ch, sh = math.cos(heading), math.sin(heading)
        feet = np.stack([fu * ch - fv * sh, fu * sh + fv * ch], axis=1)
    return Sprite(alpha, rgb.astype(F32), heat.astype(F32), height, feet,
                  belly=0.75 if lying else 0.5, leg_px=max(1.0, 0.05 * scale / gsd_m))


def _coat_rgb(
    rng: np.random.Generator, coat: Coat, u: np.ndarray, v: np.ndarray, a: float, b: float,
    size: int,
) -> np.ndarray:
    base = np.array(coat.base, F32)
    second = np.array(coat.second if coat.second is not None else coat.base, F32)
    tone = F32(1.0) + F32(0.10) * (fbm(rng, (size, size), [0.6 * b, 3.0]) - F32(0.5))
    rgb = np.broadcast_to(base, (size, size, 3)) * tone[..., None]
    mix = None
    if coat.pattern == "patches":  # Holstein / Fleckvieh: large irregular patches
        n = fbm(rng, (size, size), [0.9 * b, 0.45 * b, 0.2 * b])
        inside = n[(np.abs(u) < a) & (np.abs(v) < b)]
        t = float(np.quantile(inside, rng.uniform(0.35, 0.65))) if inside.size else 0.5
        mix = smooth_step(n, t - 0.015, t + 0.015)
    elif coat.pattern == "rump":  # deer: pale rump patch at the back end
        mix = smooth_step(-u / F32(a), 0.55, 0.85) * smooth_step(-np.abs(v) / F32(b), -0.7, -0.4)
    elif coat.pattern == "spots":  # fallow deer: pale spots along the flanks
        n = value_noise(rng, (size, size), max(0.18 * b, 1.5))
        flank = smooth_step(np.abs(v) / F32(b), 0.25, 0.45) * smooth_step(-np.abs(u) / F32(a),
                                                                         -0.85, -0.6)
        mix = smooth_step(n, 0.72, 0.8) * flank
        mix = np.maximum(mix, smooth_step(-u / F32(a), 0.7, 0.9))
    elif coat.pattern == "dapple":  # grey horse: darker rings around pale dapples
        n = fbm(rng, (size, size), [0.3 * b, 0.15 * b])
        mix = F32(0.6) * smooth_step(np.abs(n - F32(0.5)), 0.04, 0.12)
    if mix is not None:
        rgb = rgb + mix[..., None] * (second - rgb)
    if coat.stripe:
        stripe = F32(coat.stripe) * gauss(v / F32(0.22 * b)).astype(F32)
        rgb = rgb * (1 - stripe)[..., None]
    fur = F32(1.0) + F32(0.05) * (rng.random((size, size), dtype=F32) - F32(0.5))
    return (rgb * fur[..., None]).astype(F32)


def render_bush(
    rng: np.random.Generator, radius_px: float, sun: Sun, kind: str = "shrub"
) -> Sprite:
    """A shrub (dark, domed, leafy) or a tussock of tall grass / rushes (paler, low, ragged)."""
    tussock = kind == "tussock"
    lobes = int(rng.integers(1, 4))
    size = 2 * math.ceil(radius_px * 1.35) + 8
    x, y = _grid(size)
    alpha = np.zeros((size, size), F32)
    hgt = np.zeros((size, size), F32)
    for i in range(lobes):
        r = radius_px * (1.0 if i == 0 else rng.uniform(0.45, 0.75))
        off = 0.0 if i == 0 else radius_px * rng.uniform(0.3, 0.55)
        ang = rng.uniform(0, 2 * math.pi)
        cx, cy = off * math.cos(ang), off * math.sin(ang)
        dx, dy = x - F32(cx), y - F32(cy)
        rr = np.sqrt(dx * dx + dy * dy)
        # wobbly outline: sum of cos(k theta + phase), k = 2..5, from (cos theta, sin theta) by
        # complex powers (no arctan2 / cos: see exact.py)
        inv = np.where(rr > 0, 1 / np.maximum(rr, F32(1e-9)), F32(0)).astype(F64)
        c1, s1 = dx * inv + (rr == 0), dy * inv
        ck, sk = c1 * c1 - s1 * s1, 2 * c1 * s1
        edge = np.ones(rr.shape, F64)
        for k in range(2, 6):
            amp, (sp, cp) = rng.uniform(0, 0.12) / k * 2, sincos(rng.uniform(0, 6.3))
            edge += amp * (ck * cp - sk * sp)
            ck, sk = ck * c1 - sk * s1, ck * s1 + sk * c1
        edge = (edge * r).astype(F32)
        alpha = np.maximum(alpha, np.clip(edge - rr + F32(0.5), 0, 1))
        hgt = np.maximum(hgt, np.sqrt(np.clip(1 - (rr / edge) ** 2, 0, 1)) * F32(0.8 * r))
    fine = [max(radius_px / 3, 2.0), 3.0, 1.5] if tussock else [max(radius_px / 3, 2.0), 6.0, 2.5]
    leaves = fbm(rng, (size, size), fine)
    # ragged rim: near the outline, only the denser foliage covers the ground
    rim = smooth_step(hgt / F32(0.8 * radius_px), 0.0, 0.6 if tussock else 0.35)
    alpha = alpha * np.clip(rim + smooth_step(leaves, 0.42, 0.55), 0, 1)
    hgt = hgt * F32(0.4 if tussock else 1.0) + F32(0.25 * radius_px) * leaves
    shade = _lambert(gaussian_filter(hgt, 1.0), sun)
    if tussock:
        dark = np.array([0.22, 0.27, 0.10], F32) * F32(rng.uniform(0.85, 1.15))
        light = np.array([0.62, 0.60, 0.36], F32) * F32(rng.uniform(0.9, 1.1))
    else:
        dark = np.array([0.08, 0.15, 0.05], F32) * F32(rng.uniform(0.85, 1.15))
        light = np.array([0.30, 0.42, 0.14], F32) * F32(rng.uniform(0.9, 1.1))
    t = np.clip(leaves * F32(1.4) - F32(0.2), 0, 1)[..., None]
    rgb = dark + t * (light - dark)
    rgb = np.clip(rgb * (F32(0.3) + F32(0.75) * shade)[..., None], 0, 1)
    heat = F32(0.38 if tussock else 0.36) + F32(0.05) * (shade - 1)
    heat += F32(0.03) * (leaves - F32(0.5))
    height = (0.35 if tussock else 0.8) * radius_px
    return Sprite(alpha, rgb.astype(F32), heat.astype(F32), height, np.zeros((0, 2)), belly=0.1)


def shadow_patch(sprite: Sprite, sun: Sun) -> tuple[np.ndarray, int, int]:
    """Soft shadow coverage of ``sprite`` and its top-left offset from the sprite's top-left.

    The silhouette is swept from belly to back height (a body between those heights casts all of
    them); standing animals add thin leg shadows from the feet to the belly.
    """
    dx, dy = sun.shadow_offset(sprite.height_px)
    pad_x, pad_y = math.ceil(abs(dx)) + 3, math.ceil(abs(dy)) + 3
    s = sprite.size
    canvas = np.zeros((s + 2 * pad_y, s + 2 * pad_x), F32)
    m = sprite.alpha
    steps = max(2, math.ceil(math.hypot(dx, dy) * (1.0 - sprite.belly) / 1.5) + 1)
    for k in np.linspace(sprite.belly, 1.0, steps):  # dense enough that thin parts stay solid
        ox, oy = round(pad_x + k * dx), round(pad_y + k * dy)
        canvas[oy:oy + s, ox:ox + s] = np.maximum(canvas[oy:oy + s, ox:ox + s], m)
    if len(sprite.feet):
        c = np.arange(canvas.shape[0], dtype=F32)[:, None] + F32(0.5)
        r = np.arange(canvas.shape[1], dtype=F32)[None, :] + F32(0.5)
        leg_r = sprite.leg_px
        for fx, fy in sprite.feet:
            x0, y0 = pad_x + s / 2 + fx, pad_y + s / 2 + fy
            x1, y1 = x0 + sprite.belly * dx, y0 + sprite.belly * dy
            vx, vy = x1 - x0, y1 - y0
            t = np.clip(((r - x0) * vx + (c - y0) * vy) / max(vx * vx + vy * vy, 1e-6), 0, 1)
            d = np.sqrt((r - x0 - t * vx) ** 2 + (c - y0 - t * vy) ** 2)
            canvas = np.maximum(canvas, np.clip(F32(leg_r + 0.5) - d, 0, 1))
    return gaussian_filter(canvas, 1.2), -pad_y, -pad_x
