"""Shapes, solid textures and closed-form ray intersections for the synthetic demo scene.

Everything here is plain numpy over batches of rays. Ray directions are unit vectors, so a hit
distance `t` is metres along the ray. A miss is `t = inf`. Shapes live in their object's frame
(metres, +z up, the object's base on z = 0); `scene.py` places objects on the table and
turns world rays into object rays.

Why closed-form intersections rather than SDF sphere tracing: one quadratic per primitive is
exact (crisp silhouettes, exact depth) and an order of magnitude faster in numpy than 64 tracing
steps. The shapes are unions of convex pieces, so the first hit of an object is simply the
nearest first hit over its pieces.

Why solid textures: albedo is a function of the 3D point in the object's frame, so every view
sees the same colour at the same surface point, which is what a NeRF assumes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int

RGB = tuple[float, float, float]
Vec3 = tuple[float, float, float]

T_MIN = 1e-6  # metres; hits closer than this are the ray's own origin


@dataclass(frozen=True)
class Texture:
    """A solid texture: albedo as a function of the point in the object frame.

    kind:
      "solid":   colours[0] everywhere.
      "bands":   colours[i] where edges[i-1] <= coord < edges[i] (len(colours) == len(edges) + 1).
      "stripes": periodic blend of colours[0] and colours[1] along coord, one period = `period`.
    `soft` is the width of every colour blend in coord units: hard edges alias at 128 px and
    a small NeRF fits soft ones far better. `warp` adds value noise to coord before stripes
    (wood grain). `noise_amp` modulates brightness by value noise of period `noise_period`.
    Coordinates: "x", "y", "z", "abs_x" (|x|), "radius" (sqrt(x^2+y^2)), "angle" (atan2(y, x),
    radians).
    """

    kind: str
    colours: tuple[RGB, ...]
    coord: str = "z"
    edges: tuple[float, ...] = ()
    period: float = 0.05
    soft: float = 0.003
    warp: float = 0.0
    noise_amp: float = 0.0
    noise_period: float = 0.05


@dataclass(frozen=True)
class Primitive:
    """One convex piece of an object, in the object frame.

    kind "ellipsoid": centre `p0`, semi-axes `radii` (a sphere has three equal radii).
    kind "capsule":   segment `p0` -> `p1`, radius `radii[0]`.
    kind "cylinder":  vertical capped cylinder from base centre `p0` to top centre `p1`
                      (same x, y), radius `radii[0]`.
    `part`: the named part of its object this piece belongs to ("lid", "handle"), "" for the
    unnamed rest (a mug's body reads as "mug", not as a part); the part's full name is
    "<object category> <part>" (`part_name`).
    """

    kind: str
    p0: Vec3
    p1: Vec3
    radii: Vec3
    texture: Texture
    part: str = ""


@dataclass(frozen=True)
class SceneObject:
    """A named union of primitives, placed on the table by a yaw and an (x, y) position.

    `footprint` lists (x, y, radius) circles in the object frame that cover its base; the layout
    uses them to keep objects apart and the shader to draw soft contact shadows.
    """

    name: str
    primitives: tuple[Primitive, ...]
    footprint: tuple[tuple[float, float, float], ...]
    position_m: tuple[float, float] = (0.0, 0.0)
    yaw_rad: float = 0.0

    @property
    def category(self) -> str:
        """The head noun of the name: "red mug" -> "mug"."""
        return self.name.split()[-1]

    @property
    def part_names(self) -> tuple[str, ...]:
        """Full names of the named parts, in primitive order: ("mug body", "mug handle")."""
        return tuple(dict.fromkeys(part_name(self, p.part) for p in self.primitives if p.part))


def part_name(obj: SceneObject, part: str) -> str:
    """"<category> <part>": part_name(red mug, "handle") -> "mug handle"."""
    return f"{obj.category} {part}"


def part_bound(obj: SceneObject, part: str) -> tuple[Float[np.ndarray, "3"], float]:
    """A sphere (centre, radius) in the object frame containing the primitives of one part."""
    return enclosing_sphere([bounding_sphere(p) for p in obj.primitives if p.part == part])


def with_part(part: str, prims: list[Primitive]) -> list[Primitive]:
    """The same primitives, tagged as belonging to `part`."""
    return [dataclasses.replace(p, part=part) for p in prims]


@dataclass(frozen=True)
class ValueNoise:
    """Lattice value noise: a permutation (doubled, for hashing) and one random value per slot."""

    perm: Int[np.ndarray, "512"]
    values: Float[np.ndarray, "256"]


# --------------------------------------------------------------------------- constructors


def sphere(center: Vec3, radius: float, texture: Texture) -> Primitive:
    return Primitive("ellipsoid", center, center, (radius, radius, radius), texture)


def ellipsoid(center: Vec3, radii: Vec3, texture: Texture) -> Primitive:
    return Primitive("ellipsoid", center, center, radii, texture)


def capsule(start: Vec3, end: Vec3, radius: float, texture: Texture) -> Primitive:
    return Primitive("capsule", start, end, (radius, radius, radius), texture)


def cylinder(base: Vec3, height: float, radius: float, texture: Texture) -> Primitive:
    top = (base[0], base[1], base[2] + height)
    return Primitive("cylinder", base, top, (radius, radius, radius), texture)


def tube(points: Float[np.ndarray, "n 3"], radii: Float[np.ndarray, " m"], texture: Texture) -> list[Primitive]:
    """A bent tube as a chain of capsules through `points` (m = n - 1 segment radii)."""
    return [capsule(tuple(map(float, a)), tuple(map(float, b)), float(r), texture)
            for a, b, r in zip(points[:-1], points[1:], radii)]


def make_noise(rng: np.random.Generator) -> ValueNoise:
    perm = rng.permutation(256)
    return ValueNoise(perm=np.concatenate([perm, perm]).astype(np.int64), values=rng.random(256))


# --------------------------------------------------------------------------- intersections


def _sphere_t(o: Float[np.ndarray, "n 3"], d: Float[np.ndarray, "n 3"], center: Float[np.ndarray, "3"],
              radius: float) -> Float[np.ndarray, " n"]:
    oc = o - center
    b = np.einsum("ij,ij->i", oc, d)
    c = np.einsum("ij,ij->i", oc, oc) - radius * radius
    return _nearest_root(np.ones_like(b), b, c)


def _nearest_root(a: Float[np.ndarray, " n"], b: Float[np.ndarray, " n"],
                  c: Float[np.ndarray, " n"]) -> Float[np.ndarray, " n"]:
    """Smaller root of a t^2 + 2 b t + c = 0 when it is real, positive and a > 0; else inf."""
    disc = b * b - a * c
    ok = (disc >= 0) & (a > 1e-12)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-b - np.sqrt(np.where(ok, disc, 0.0))) / np.where(ok, a, 1.0)
    return np.where(ok & (t > T_MIN), t, np.inf)


def intersect(prim: Primitive, o: Float[np.ndarray, "n 3"], d: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, " n"]:
    """Distance to the first hit of unit rays (o, d) with `prim`, inf on a miss.

    Example: a unit sphere at the origin and a ray from (0, 0, 5) along -z: t = 4.
    A capsule (0,0,0)->(1,0,0) of radius 0.5 and a ray from (0.5, 0, 3) along -z: t = 2.5.
    """
    p0, p1, r = np.asarray(prim.p0, dtype=np.float64), np.asarray(prim.p1, dtype=np.float64), prim.radii[0]
    if prim.kind == "ellipsoid":
        radii = np.asarray(prim.radii)
        oc, dd = (o - p0) / radii, d / radii
        return _nearest_root(np.einsum("ij,ij->i", dd, dd), np.einsum("ij,ij->i", oc, dd),
                             np.einsum("ij,ij->i", oc, oc) - 1.0)
    if prim.kind == "capsule":
        return _capsule_t(o, d, p0, p1, r)
    if prim.kind == "cylinder":
        return _cylinder_t(o, d, p0, p1, r)
    raise ValueError(f"unknown primitive kind '{prim.kind}'")


def _capsule_t(o: Float[np.ndarray, "n 3"], d: Float[np.ndarray, "n 3"], p0: Float[np.ndarray, "3"],
               p1: Float[np.ndarray, "3"], r: float) -> Float[np.ndarray, " n"]:
    # A capsule is a finite cylinder plus two end spheres. A ray that enters the finite cylinder
    # through a flat end is already inside an end sphere, so the side entry and the two sphere
    # entries suffice. Side: |q - (q.ba) ba / |ba|^2|^2 = r^2 with q = o - p0 + t d, times |ba|^2.
    ba = p1 - p0
    oa = o - p0
    baba, bard, baoa = ba @ ba, d @ ba, oa @ ba
    a = baba - bard * bard
    b = baba * np.einsum("ij,ij->i", oa, d) - baoa * bard
    c = baba * np.einsum("ij,ij->i", oa, oa) - baoa * baoa - r * r * baba
    t = _nearest_root(a, b, c)
    along = baoa + np.where(np.isfinite(t), t, 0.0) * bard  # (hit - p0).ba, must lie in [0, |ba|^2]
    t = np.where((along >= 0) & (along <= baba), t, np.inf)
    return np.minimum(t, np.minimum(_sphere_t(o, d, p0, r), _sphere_t(o, d, p1, r)))


def _cylinder_t(o: Float[np.ndarray, "n 3"], d: Float[np.ndarray, "n 3"], base: Float[np.ndarray, "3"],
                top: Float[np.ndarray, "3"], r: float) -> Float[np.ndarray, " n"]:
    # Convex solid: its entry is the nearest valid hit among the side and the two cap planes.
    ox, oy = o[:, 0] - base[0], o[:, 1] - base[1]
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    t_side = _nearest_root(dx * dx + dy * dy, ox * dx + oy * dy, ox * ox + oy * oy - r * r)
    z_side = o[:, 2] + np.where(np.isfinite(t_side), t_side, 0.0) * dz
    best = np.where((z_side >= base[2]) & (z_side <= top[2]), t_side, np.inf)
    safe_dz = np.where(np.abs(dz) > 1e-12, dz, 1e-12)
    for z_cap in (base[2], top[2]):
        t_cap = (z_cap - o[:, 2]) / safe_dz
        x, y = ox + t_cap * dx, oy + t_cap * dy
        ok = (t_cap > T_MIN) & (x * x + y * y <= r * r) & (np.abs(dz) > 1e-12)
        best = np.minimum(best, np.where(ok, t_cap, np.inf))
    return best


def bounding_sphere(prim: Primitive) -> tuple[Float[np.ndarray, "3"], float]:
    """A sphere (centre, radius) that contains `prim`."""
    p0, p1 = np.asarray(prim.p0, dtype=np.float64), np.asarray(prim.p1, dtype=np.float64)
    if prim.kind == "ellipsoid":
        return p0, float(max(prim.radii))
    half = float(np.linalg.norm(p1 - p0)) / 2
    if prim.kind == "capsule":
        return (p0 + p1) / 2, half + prim.radii[0]
    return (p0 + p1) / 2, float(np.hypot(half, prim.radii[0]))


def enclosing_sphere(spheres: list[tuple[Float[np.ndarray, "3"], float]]) -> tuple[Float[np.ndarray, "3"], float]:
    """A sphere containing all `spheres` (centred on their bounding box, so not the smallest).

    Example: unit spheres at (0, 0, 0) and (4, 0, 0) -> centre (2, 0, 0), radius 3.
    """
    lo = np.min([c - r for c, r in spheres], axis=0)
    hi = np.max([c + r for c, r in spheres], axis=0)
    center = (lo + hi) / 2
    return center, max(float(np.linalg.norm(c - center)) + r for c, r in spheres)


def object_bound(obj: SceneObject) -> tuple[Float[np.ndarray, "3"], float]:
    """A sphere (centre, radius) in the object frame that contains every primitive of `obj`."""
    return enclosing_sphere([bounding_sphere(p) for p in obj.primitives])


def surface_normal(prim: Primitive, p: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
    """Outward unit normal of `prim` at surface points `p` (object frame).

    Example: a unit sphere at the origin, p = (0, 0, 1) -> (0, 0, 1).
    """
    p0, p1, r = np.asarray(prim.p0, dtype=np.float64), np.asarray(prim.p1, dtype=np.float64), prim.radii[0]
    if prim.kind == "ellipsoid":
        n = (p - p0) / np.square(np.asarray(prim.radii))
    elif prim.kind == "capsule":
        ba = p1 - p0
        h = np.clip((p - p0) @ ba / (ba @ ba), 0.0, 1.0)
        n = p - (p0 + h[:, None] * ba)
    elif prim.kind == "cylinder":
        rad = p[:, :2] - p0[:2]
        dist_side = np.abs(np.linalg.norm(rad, axis=1) - r)
        dist_top, dist_bottom = np.abs(p[:, 2] - p1[2]), np.abs(p[:, 2] - p0[2])
        n = np.concatenate([rad, np.zeros((len(p), 1))], axis=1)
        cap = np.minimum(dist_top, dist_bottom) < dist_side  # nearest face wins
        n[cap] = [0.0, 0.0, 1.0]
        n[cap & (dist_bottom < dist_top)] = [0.0, 0.0, -1.0]
    else:
        raise ValueError(f"unknown primitive kind '{prim.kind}'")
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------- textures


def value_noise(p: Float[np.ndarray, "n 3"], noise: ValueNoise) -> Float[np.ndarray, " n"]:
    """Smooth noise in [0, 1] with one random value per integer lattice point of `p`.

    Values are blended trilinearly with smoothstep weights, so the noise is C1 and has a period
    of about one lattice unit: scale `p` to pick the feature size. A lattice point (x, y, z) hashes
    to perm[perm[perm[x] + y] + z] (coordinates mod 256), Perlin's scheme.
    Example: at a lattice point (2, 5, 7) the value is exactly that lattice point's random value.
    """
    cell = np.floor(p)
    f = p - cell
    w = f * f * (3 - 2 * f)
    lo = cell.astype(np.int64) & 255
    corners = [(lo[:, a], 1 - w[:, a], (lo[:, a] + 1) & 255, w[:, a]) for a in range(3)]
    (x0, wx0, x1, wx1), (y0, wy0, y1, wy1), (z0, wz0, z1, wz1) = corners
    out = np.zeros(len(p))
    for hx, wx in ((noise.perm[x0], wx0), (noise.perm[x1], wx1)):
        for y, wy in ((y0, wy0), (y1, wy1)):
            hxy, wxy = noise.perm[hx + y], wx * wy
            out += wxy * (wz0 * noise.values[noise.perm[hxy + z0]] + wz1 * noise.values[noise.perm[hxy + z1]])
    return out


def _coordinate(p: Float[np.ndarray, "n 3"], name: str) -> Float[np.ndarray, " n"]:
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    table = {"x": lambda: x, "y": lambda: y, "z": lambda: z, "abs_x": lambda: np.abs(x),
             "radius": lambda: np.hypot(x, y), "angle": lambda: np.arctan2(y, x)}
    if name not in table:
        raise ValueError(f"unknown texture coordinate '{name}'; expected one of {sorted(table)}")
    return table[name]()


def _blend(a: Float[np.ndarray, "n 3"], b: Float[np.ndarray, "n 3"] | Float[np.ndarray, "3"],
           w: Float[np.ndarray, " n"]) -> Float[np.ndarray, "n 3"]:
    return a + (b - a) * np.clip(w, 0.0, 1.0)[:, None]


def albedo(tex: Texture, p: Float[np.ndarray, "n 3"], noise: ValueNoise) -> Float[np.ndarray, "n 3"]:
    """Albedo (linear [0, 1] RGB) of `tex` at object-frame points `p`.

    Example: Texture("bands", ((1,0,0), (0,0,1)), coord="z", edges=(0.05,), soft=0.002) gives red
    at z = 0.01, blue at z = 0.09, and the mean of the two exactly at z = 0.05.
    """
    cols = np.asarray(tex.colours, dtype=np.float64)
    s = _coordinate(p, tex.coord) if tex.kind in ("bands", "stripes") else None
    out = np.broadcast_to(cols[0], (len(p), 3)).copy()
    # one noise field serves both the stripe warp and the brightness variation
    grain = value_noise(p / tex.noise_period, noise) if (tex.warp or tex.noise_amp) else None
    if tex.kind == "bands":
        for edge, col in zip(tex.edges, cols[1:]):
            out = _blend(out, col, 0.5 + (s - edge) / tex.soft)
    elif tex.kind == "stripes":
        s = s + tex.warp * (grain - 0.5) if tex.warp else s
        wave = np.sin(2 * np.pi * s / tex.period)
        # sin crosses zero with slope 2 pi / period, so this blend is `soft` wide
        out = _blend(out, cols[1], 0.5 + wave * tex.period / (2 * np.pi * tex.soft))
    elif tex.kind != "solid":
        raise ValueError(f"unknown texture kind '{tex.kind}'")
    if tex.noise_amp:
        out *= (1 + tex.noise_amp * (2 * grain - 1))[:, None]
    return np.clip(out, 0.0, 1.0)


def with_colour_gain(obj: SceneObject, gain: Float[np.ndarray, "3"]) -> SceneObject:
    """The same object with every texture colour scaled per channel by `gain` (clipped to [0, 1])."""
    def scale(tex: Texture) -> Texture:
        cols = tuple(tuple(float(v) for v in np.clip(np.asarray(c) * gain, 0, 1)) for c in tex.colours)
        return dataclasses.replace(tex, colours=cols)

    prims = tuple(dataclasses.replace(p, texture=scale(p.texture)) for p in obj.primitives)
    return dataclasses.replace(obj, primitives=prims)


def first_hits(obj: SceneObject, o: Float[np.ndarray, "n 3"], d: Float[np.ndarray, "n 3"]
               ) -> tuple[Float[np.ndarray, " n"], Int[np.ndarray, " n"]]:
    """(t, index of the primitive hit) of unit rays in `obj`'s frame; (inf, -1) on a miss."""
    ts = np.stack([intersect(p, o, d) for p in obj.primitives])
    which = np.argmin(ts, axis=0)
    t = ts[which, np.arange(len(o))]
    return t, np.where(np.isfinite(t), which, -1)


# --------------------------------------------------------------------------- the object catalogue
# Sizes in metres, each object's base on z = 0. Colours are sRGB-ish display values in [0, 1].

WOOD_LIGHT, WOOD_DARK = (0.86, 0.68, 0.45), (0.70, 0.50, 0.30)


def _arc(center_xz: tuple[float, float], radius: float, deg_from: float, deg_to: float,
         n: int) -> Float[np.ndarray, "n 3"]:
    """n points on a circular arc in the x-z plane (angles from +x towards +z)."""
    ang = np.radians(np.linspace(deg_from, deg_to, n))
    return np.stack([center_xz[0] + radius * np.cos(ang), np.zeros(n), center_xz[1] + radius * np.sin(ang)], 1)


def _mug(name: str, colour: RGB, band: RGB, height: float, radius: float) -> SceneObject:
    body = Texture("bands", (colour, band, colour), coord="z", edges=(0.55 * height, 0.74 * height), soft=0.003)
    solid = Texture("solid", (colour,))
    coffee = Texture("solid", ((0.24, 0.13, 0.07),))
    # The coffee disc sits 0.5 mm above the rim plane, so from above it hides the inner part of
    # the body's top cap and the mug reads as open without CSG.
    prims = [cylinder((0.0, 0.0, 0.0), height, radius, body),
             cylinder((0.0, 0.0, height - 0.0015), 0.002, radius - 0.006, coffee)]
    prims += with_part("handle", tube(_arc((radius, 0.53 * height), 0.027, -80.0, 80.0, 7), np.full(6, 0.0075),
                                      solid))
    return SceneObject(name, tuple(prims), footprint=((0.0, 0.0, radius + 0.002), (radius + 0.015, 0.0, 0.022)))


def red_mug() -> SceneObject:
    return _mug("red mug", (0.78, 0.10, 0.09), (0.95, 0.93, 0.88), height=0.095, radius=0.040)


def white_mug() -> SceneObject:
    """A distractor: shares "mug" with the red mug and "white" with the plate."""
    return _mug("white mug", (0.93, 0.92, 0.88), (0.35, 0.36, 0.40), height=0.085, radius=0.037)


def blue_teapot() -> SceneObject:
    blue, dark = (0.16, 0.30, 0.72), (0.10, 0.18, 0.48)
    body = Texture("bands", (blue, (0.92, 0.93, 0.95), blue), coord="z", edges=(0.052, 0.068), soft=0.004,
                   noise_amp=0.06, noise_period=0.04)
    lid = Texture("solid", (dark,))
    plain = Texture("solid", (blue,))
    prims = [ellipsoid((0.0, 0.0, 0.060), (0.075, 0.075, 0.056), body), cylinder((0.0, 0.0, 0.0), 0.012, 0.045, plain)]
    prims += with_part("lid", [ellipsoid((0.0, 0.0, 0.110), (0.044, 0.044, 0.020), lid),
                               sphere((0.0, 0.0, 0.133), 0.012, lid)])
    prims += with_part("spout", [capsule((0.050, 0.0, 0.045), (0.100, 0.0, 0.085), 0.014, plain),
                                 capsule((0.100, 0.0, 0.085), (0.124, 0.0, 0.108), 0.010, plain)])
    prims += with_part("handle", tube(_arc((-0.066, 0.062), 0.032, 80.0, 280.0, 7), np.full(6, 0.009), lid))
    return SceneObject("blue teapot", tuple(prims),
                       footprint=((0.0, 0.0, 0.077), (0.105, 0.0, 0.022), (-0.095, 0.0, 0.015)))


def red_apple() -> SceneObject:
    """A distractor: shares "red" with the red mug."""
    red, blush = (0.74, 0.11, 0.10), (0.86, 0.55, 0.18)
    skin = Texture("bands", (blush, red), coord="z", edges=(0.022,), soft=0.02, noise_amp=0.10, noise_period=0.02)
    stem = Texture("solid", ((0.35, 0.24, 0.12),))
    prims = (ellipsoid((0.0, 0.0, 0.036), (0.040, 0.040, 0.036), skin),
             capsule((0.0, 0.0, 0.068), (0.004, 0.002, 0.084), 0.0035, stem))
    return SceneObject("red apple", prims, footprint=((0.0, 0.0, 0.041),))


def yellow_banana() -> SceneObject:
    yellow, brown = (0.93, 0.80, 0.18), (0.38, 0.27, 0.10)
    skin = Texture("bands", (yellow, brown), coord="abs_x", edges=(0.088,), soft=0.006,
                   noise_amp=0.10, noise_period=0.03)
    stem = Texture("solid", ((0.45, 0.42, 0.16),))
    # Centreline: an arc bent in the table plane; the tube tapers towards both tips and rests on
    # the table (each point lifted by its own radius).
    ang = np.linspace(-0.62, 0.62, 10)
    arc_r = 0.16
    s = np.linspace(0.0, 1, 10)
    rad = 0.0185 * np.sqrt(np.clip(np.sin(np.pi * s), 0.12, 1))
    pts = np.stack([arc_r * np.sin(ang), arc_r * np.cos(ang) - arc_r * (1 + np.cos(0.62)) / 2, rad], 1)
    prims = tube(pts, (rad[:-1] + rad[1:]) / 2, skin)
    tip = pts[-1]
    tangent = (pts[-1] - pts[-2]) / np.linalg.norm(pts[-1] - pts[-2])
    prims.append(capsule(tuple(tip), tuple(tip + 0.018 * tangent + [0, 0.0, 0.004]), 0.0045, stem))
    return SceneObject("yellow banana", tuple(prims),
                       footprint=((-0.075, -0.012, 0.03), (0.0, 0.02, 0.03), (0.075, -0.012, 0.03)))


def green_cactus() -> SceneObject:
    green = (0.22, 0.55, 0.22)
    ribs = Texture("stripes", (green, (0.14, 0.40, 0.15)), coord="angle", period=2 * np.pi / 7, soft=0.5)
    arm = Texture("solid", (green,), noise_amp=0.08, noise_period=0.03)
    pot = Texture("bands", ((0.72, 0.38, 0.22), (0.60, 0.30, 0.17)), coord="z", edges=(0.052,), soft=0.002)
    soil = Texture("solid", ((0.25, 0.17, 0.11),), noise_amp=0.15, noise_period=0.02)
    prims = with_part("pot", [cylinder((0.0, 0.0, 0.0), 0.062, 0.045, pot),
                              cylinder((0.0, 0.0, 0.060), 0.0025, 0.040, soil)])
    prims += [capsule((0.0, 0.0, 0.060), (0.0, 0.0, 0.175), 0.026, ribs),
              capsule((0.020, 0.0, 0.100), (0.056, 0.0, 0.100), 0.013, arm),
              capsule((0.056, 0.0, 0.100), (0.056, 0.0, 0.142), 0.013, arm),
              capsule((-0.020, 0.0, 0.122), (-0.052, 0.0, 0.122), 0.012, arm),
              capsule((-0.052, 0.0, 0.122), (-0.052, 0.0, 0.158), 0.012, arm)]
    return SceneObject("green cactus", tuple(prims), footprint=((0.0, 0.0, 0.070),))


def wooden_spoon() -> SceneObject:
    grain = Texture("stripes", (WOOD_LIGHT, WOOD_DARK), coord="y", period=0.024, soft=0.006, warp=0.01,
                    noise_period=0.04)
    prims = [capsule((-0.115, 0.0, 0.010), (0.030, 0.0, 0.010), 0.010, grain)]
    prims += with_part("bowl", [ellipsoid((0.070, 0.0, 0.012), (0.048, 0.033, 0.012), grain)])
    return SceneObject("wooden spoon", tuple(prims),
                       footprint=((-0.085, 0.0, 0.015), (-0.035, 0.0, 0.015), (0.065, 0.0, 0.045)))


def white_plate() -> SceneObject:
    white, blue = (0.93, 0.93, 0.91), (0.20, 0.35, 0.75)
    rim = Texture("bands", (white, blue, white), coord="radius", edges=(0.076, 0.088), soft=0.003)
    return SceneObject("white plate", (cylinder((0.0, 0.0, 0.0), 0.014, 0.105, rim),), footprint=((0.0, 0.0, 0.105),))


def table(radius_m: float) -> SceneObject:
    """The round table top: a 3 cm thick disc whose top face is z = 0, with wood grain."""
    grain = Texture("stripes", ((0.55, 0.37, 0.22), (0.45, 0.29, 0.17)), coord="y", period=0.06, soft=0.012,
                    warp=0.04, noise_amp=0.05, noise_period=0.08)
    return SceneObject("table", (cylinder((0.0, 0.0, -0.03), 0.03, radius_m, grain),), footprint=())


CATALOGUE = (red_mug, blue_teapot, yellow_banana, green_cactus, wooden_spoon, white_plate, red_apple, white_mug)
# Named groups of catalogue objects: the layout keeps each group's members close together, so a
# crop can cover several of them (see lerf.demo.reference for what such a crop means).
GROUPS: dict[str, tuple[str, ...]] = {"tea set": ("blue teapot", "red mug"), "fruit": ("yellow banana", "red apple"),
                                      "place setting": ("white plate", "wooden spoon")}
