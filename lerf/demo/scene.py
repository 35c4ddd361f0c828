"""The synthetic demo scene: a labelled tabletop, ray cast in closed form, written as a nerfstudio scene.

Eight named objects (DEMO_OBJECT_NAMES) stand apart on a round wooden table (0.9 m across, top face
z = 0, origin at its centre, +z up, metres). Objects have named parts (teapot lid, spout, body and
handle; mug body and handle; cactus pot and stem; spoon handle and bowl) and belong to named
groups (GROUPS: "tea set" = blue teapot + red mug, "fruit" = yellow banana + red apple, "place
setting" = white plate + wooden spoon), whose members the layout keeps close together. Distractors:
"red mug" / "red apple" share an attribute, "red mug" / "white mug" a category.

A seed picks positions, yaws and a colour jitter. Shading is Lambertian (one directional light +
ambient) with soft fake contact shadows, so appearance is view-independent and a small NeRF fits it.
Cameras sit on a golden-angle spiral over the upper hemisphere at distances from 0.55 to 1.25 m
(close-ups look at points near the objects, wide views at the table centre), so one crop size in
pixels covers physical sizes more than 2x apart.

Output layout (frame k = 0..N-1 is named frame_{k+1:05d}):
  transforms.json    nerfstudio PINHOLE intrinsics, OpenGL c2w per frame, "background_color",
                     "scene_units"; each frame also names its depth, id and part-id files
  images/*.png       RGB uint8, 2x2 supersampled
  depths/*.npy       float32 distance along the ray (metres) of the pixel-centre ray, inf on a miss
  ids/*.png          uint8 object id of the pixel-centre ray: 0 background, 1 table, 2.. objects
  parts/*.png        uint8 part id of the pixel-centre ray (ids in labels.json "hierarchy")
  labels.json        {"objects": {"1": "table", "2": "red mug", ...}, "seed", "background_id",
                     "object_centers_m": {"2": [x, y, z], ...}, "groups": {"tea set": [3, 2], ...},
                     "hierarchy": {"parts": {pid: {"name", "object", "size_m"}},
                                   "objects": {oid: {"name", "size_m", "group"}}}}
  labels/*.json      LabelMe-style boxes and polygons (lerf_ovs format) for held-out frames
                     (k % 8 == 0), at three levels ("level": part | object | group): pixel
                     coordinates, x right, y down, x2/y2 inclusive.

Sizes (`size_m`) are bounding-sphere diameters; the reference CLIP encoder compares them with a
crop's physical extent (lerf.demo.reference).

`python -m lerf.demo.scene OUT_DIR [--seed S] [--views N] [--width W --height H]`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Bool, Float, Int, UInt8
from PIL import Image
from tqdm import tqdm

from lerf.data.atomic import build_directory_once, save_npy, write_json
from lerf.demo.shapes import (CATALOGUE, GROUPS, SceneObject, ValueNoise, albedo, enclosing_sphere, first_hits,
                                   make_noise, object_bound, part_bound, part_name, surface_normal, table,
                                   with_colour_gain)

log = logging.getLogger(__name__)

DEMO_OBJECT_NAMES: tuple[str, ...] = tuple(build().name for build in CATALOGUE)
TABLE_ID = 1  # ids: 0 background, 1 table, 2 + i for DEMO_OBJECT_NAMES[i]
TABLE_RADIUS_M = 0.45
PLACEMENT_RADIUS_M = 0.35  # every footprint stays inside this disc, so objects stay in frame
OBJECT_GAP_M = 0.04  # minimum clearance between footprints
GROUP_GAP_M = 0.07  # a group member stands at most this far (footprint gap) from an earlier member
# Per-object colour jitter: a brightness gain in [1 - b, 1 + b] times a per-channel tint in
# [1 - t, 1 + t]; the tint stays small so a white plate stays white and a red mug red.
JITTER_BRIGHTNESS, JITTER_TINT = 0.10, 0.03
BACKGROUND_RGB = (0.85, 0.87, 0.90)
LIGHT_DIR = np.array([0.45, 0.30, 0.84]) / np.linalg.norm([0.45, 0.30, 0.84])  # towards the light
AMBIENT, DIFFUSE = 0.45, 0.55  # a surface facing the light gets albedo * 1.0
SHADOW_STRENGTH = 0.35
HFOV_DEG = 50.0
ELEVATION_DEG = (25.0, 70.0)
# Close-ups and wide views: the same crop in pixels covers physical sizes 2.3x apart, so the
# pixel -> metres conversion (depth) matters to the language field's scale input.
CAMERA_RADIUS_M = (0.55, 1.25)
LOOK_AT_M = (0.0, 0.0, 0.05)
CLOSE_UP_OFFSET_M = 0.18  # the closest cameras look this far from the centre, towards the objects
EVAL_EVERY = 8  # the loader's default held-out split: frame k is held out when k % 8 == 0
# A labelled piece must cover at least this fraction of the image (and 20 px): 20 px at 128 px, 65 px at
# 256 px; slivers of a few pixels make no useful query.
MIN_LABEL_FRAC = 0.001
LEVELS = ("part", "object", "group")


@dataclass(frozen=True)
class DemoScene:
    """objects[0] is the table; objects[i] has id i + 1."""

    objects: tuple[SceneObject, ...]
    bounds: tuple[tuple[Float[np.ndarray, "3"], float], ...]  # world bounding sphere per object
    noise: ValueNoise
    seed: int


# --------------------------------------------------------------------------- layout


def _rot_z(yaw: float) -> Float[np.ndarray, "3 3"]:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _object_to_world(obj: SceneObject) -> tuple[Float[np.ndarray, "3 3"], Float[np.ndarray, "3"]]:
    """(R, t) with world = R @ local + t."""
    return _rot_z(obj.yaw_rad), np.array([obj.position_m[0], obj.position_m[1], 0.0])


def world_footprint(obj: SceneObject) -> Float[np.ndarray, "m 3"]:
    """The object's footprint circles (x, y, r) in world coordinates."""
    rot, pos = _object_to_world(obj)
    circles = np.asarray(obj.footprint, dtype=np.float64).reshape(-1, 3)
    centres = circles[:, :2] @ rot[:2, :2].T + pos[:2]
    return np.concatenate([centres, circles[:, 2:]], axis=1)


def _gaps(circles: Float[np.ndarray, "m 3"], other: Float[np.ndarray, "k 3"]) -> Float[np.ndarray, "m k"]:
    """Clearance between every pair of footprint circles (negative when they overlap)."""
    centre_dist = np.linalg.norm(circles[:, None, :2] - other[None, :, :2], axis=-1)
    return centre_dist - circles[:, None, 2] - other[None, :, 2]


def _fits(circles: Float[np.ndarray, "m 3"], placed: list[Float[np.ndarray, "_ 3"]],
          mates: list[Float[np.ndarray, "_ 3"]]) -> bool:
    """Inside the placement disc, clear of every placed object, and near a placed group mate (if any)."""
    if np.any(np.linalg.norm(circles[:, :2], axis=1) + circles[:, 2] > PLACEMENT_RADIUS_M):
        return False
    if any(np.any(_gaps(circles, other) < OBJECT_GAP_M) for other in placed):
        return False
    return not mates or min(float(_gaps(circles, m).min()) for m in mates) <= GROUP_GAP_M


def _group_of(name: str) -> str | None:
    return next((g for g, members in GROUPS.items() if name in members), None)


def layout_objects(objects: tuple[SceneObject, ...], rng: np.random.Generator,
                   attempts: int = 400) -> tuple[SceneObject, ...]:
    """Random non-overlapping positions and yaws on the table (rejection sampling).

    Larger objects go first, but a group's members follow each other, each within GROUP_GAP_M of
    an earlier member; a full restart follows an object that finds no free spot.
    """
    size = [max(c[2] + np.hypot(c[0], c[1]) for c in o.footprint) for o in objects]
    group_size = {g: max(size[i] for i, o in enumerate(objects) if _group_of(o.name) == g) for g in GROUPS}
    order = sorted(range(len(objects)), key=lambda i: (-group_size.get(_group_of(objects[i].name), size[i]),
                                                       str(_group_of(objects[i].name)), -size[i]))
    for _ in range(100):
        placed: dict[int, SceneObject] = {}
        for i in order:
            group = _group_of(objects[i].name)
            mates = [world_footprint(o) for o in placed.values() if group and _group_of(o.name) == group]
            for _ in range(attempts):
                r, phi = PLACEMENT_RADIUS_M * np.sqrt(rng.random()), 2 * np.pi * rng.random()
                cand = dataclasses.replace(objects[i], position_m=(float(r * np.cos(phi)), float(r * np.sin(phi))),
                                           yaw_rad=float(2 * np.pi * rng.random()))
                if _fits(world_footprint(cand), [world_footprint(o) for o in placed.values()], mates):
                    placed[i] = cand
                    break
            else:
                break
        if len(placed) == len(objects):
            return tuple(placed[i] for i in range(len(objects)))
    raise RuntimeError("could not place the demo objects without overlap; the catalogue is too large for the table")


def _colour_gain(rng: np.random.Generator) -> Float[np.ndarray, "3"]:
    brightness = 1 + rng.uniform(-JITTER_BRIGHTNESS, JITTER_BRIGHTNESS)
    return brightness * (1 + rng.uniform(-JITTER_TINT, JITTER_TINT, 3))


def build_demo_scene(seed: int) -> DemoScene:
    """The scene for `seed`: jittered colours, a random layout, the noise lattice for textures."""
    rng = np.random.default_rng(seed)
    objects = tuple(with_colour_gain(build(), _colour_gain(rng)) for build in CATALOGUE)
    placed = layout_objects(objects, rng)
    tabletop = with_colour_gain(table(TABLE_RADIUS_M), _colour_gain(rng))
    objects = (tabletop,) + placed
    return DemoScene(objects=objects, bounds=tuple(_world_bound(o) for o in objects), noise=make_noise(rng), seed=seed)


def _world_bound(obj: SceneObject) -> tuple[Float[np.ndarray, "3"], float]:
    rot, pos = _object_to_world(obj)
    center, radius = object_bound(obj)
    return rot @ center + pos, radius


def object_centers(scene: DemoScene) -> dict[int, list[float]]:
    """World centre (metres) of each object's bounding sphere, keyed by object id (table excluded)."""
    return {k + 1: [float(v) for v in scene.bounds[k][0]] for k in range(1, len(scene.objects))}


def part_ids(scene: DemoScene) -> list[list[int]]:
    """Part id of every primitive of every object: `part_ids(scene)[k][j]` for object index k.

    Ids count from 1 (the table) in object order, one per named part of an object and one for an
    object without named parts; 0 is the background. Example: the table -> [[1]], then a mug with
    parts (body, body, handle x6) -> [2, 2, 3, 3, 3, 3, 3, 3].
    """
    out, next_id = [], 1
    for obj in scene.objects:
        ids: dict[str, int] = {}
        for prim in obj.primitives:
            if prim.part not in ids:
                ids[prim.part], next_id = next_id, next_id + 1
        out.append([ids[p.part] for p in obj.primitives])
    return out


def hierarchy(scene: DemoScene) -> dict:
    """labels.json's "hierarchy": part id -> {name (None for an unnamed whole object), object id,
    size_m}; object id -> {name, size_m, group (None if ungrouped), stuff (the table: a surface,
    not a thing)}. Sizes are bounding-sphere diameters in metres."""
    ids = part_ids(scene)
    parts, objects = {}, {}
    for k, obj in enumerate(scene.objects):
        obj_id = k + 1
        objects[str(obj_id)] = {"name": obj.name, "size_m": round(2 * object_bound(obj)[1], 4),
                                "group": _group_of(obj.name), "stuff": obj_id == TABLE_ID}
        for prim, pid in zip(obj.primitives, ids[k]):
            if str(pid) not in parts:
                size = part_bound(obj, prim.part)[1] if prim.part else object_bound(obj)[1]
                parts[str(pid)] = {"name": part_name(obj, prim.part) if prim.part else None, "object": obj_id,
                                   "size_m": round(2 * size, 4)}
    return {"parts": parts, "objects": objects}


# --------------------------------------------------------------------------- cameras


def look_at(eye: Float[np.ndarray, "3"], target: Float[np.ndarray, "3"]) -> Float[np.ndarray, "4 4"]:
    """OpenGL camera-to-world: the camera looks down -z, +y is up (world up = +z), +x right.

    Example: eye (0, -1, 0), target (0, 0, 0) -> columns x = (1, 0, 0), y = (0, 0, 1), z = (0, -1, 0).
    """
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, eye
    return c2w


def camera_poses(num_views: int) -> Float[np.ndarray, "n 4 4"]:
    """A golden-angle spiral of cameras over the elevation band at distances in CAMERA_RADIUS_M.

    sin(elevation) is spaced evenly, so views cover the band's area evenly; the golden angle
    spreads azimuths, so any run of consecutive frames (and every 8th frame) circles the table.
    The distance wobbles over CAMERA_RADIUS_M (close-ups and wide views); a camera looks at a point
    up to CLOSE_UP_OFFSET_M from LOOK_AT_M, the further the closer it is, in a direction that
    follows its own sequence (twice the azimuth), so close-ups frame different parts of the table.
    """
    k = np.arange(num_views)
    lo, hi = np.sin(np.radians(ELEVATION_DEG))
    elevation = np.arcsin(lo + (hi - lo) * (k + 0.5) / num_views)
    golden = np.pi * (3 - np.sqrt(5))
    azimuth = k * golden
    r_lo, r_hi = CAMERA_RADIUS_M
    closeness = 0.5 + 0.5 * np.sin(2.0 * k + 1.0)  # 1 = nearest
    radius = r_hi - (r_hi - r_lo) * closeness
    offset_dir = 2.0 * azimuth + 0.5  # another equidistributed sequence of directions
    targets = np.asarray(LOOK_AT_M) + CLOSE_UP_OFFSET_M * closeness[:, None] * np.stack(
        [np.cos(offset_dir), np.sin(offset_dir), np.zeros(num_views)], axis=1)
    eyes = targets + radius[:, None] * np.stack(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)], axis=1)
    return np.stack([look_at(eye, target) for eye, target in zip(eyes, targets)])


def intrinsics(width: int, height: int) -> tuple[float, float, float, float]:
    """(fl_x, fl_y, cx, cy) in pixels for HFOV_DEG horizontal field of view and square pixels."""
    fl = 0.5 * width / np.tan(np.radians(HFOV_DEG) / 2)
    return float(fl), float(fl), width / 2, height / 2


# --------------------------------------------------------------------------- ray casting


def _crossing(o: Float[np.ndarray, "n 3"], d: Float[np.ndarray, "n 3"], center: Float[np.ndarray, "3"],
              radius: float, t_max: Float[np.ndarray, " n"]) -> Int[np.ndarray, " k"]:
    """Indices of the unit rays that cross the sphere ahead of them and before t_max."""
    oc = o - center
    b = np.einsum("ij,ij->i", oc, d)
    disc = b * b - np.einsum("ij,ij->i", oc, oc) + radius * radius
    root = np.sqrt(np.maximum(disc, 0.0))
    return np.nonzero((disc >= 0) & (root - b > 0) & (-b - root < t_max))[0]


def trace(scene: DemoScene, o: Float[np.ndarray, "n 3"], d: Float[np.ndarray, "n 3"]
          ) -> tuple[Float[np.ndarray, " n"], Int[np.ndarray, " n"], Int[np.ndarray, " n"]]:
    """(t, object index, primitive index) of each unit world ray's first hit; (inf, -1, -1) on a miss.

    Bounding spheres prune the work: one around all objects, then one per object, so each
    object's primitives only see the rays that can hit it.
    """
    n = len(o)
    t, which_obj, which_prim = np.full(n, np.inf), np.full(n, -1), np.full(n, -1)
    group = _crossing(o, d, *enclosing_sphere(list(scene.bounds[1:])), t)
    for k, obj in enumerate(scene.objects):
        center, radius = scene.bounds[k]
        if k == 0:  # the table: every ray is a candidate
            idx = _crossing(o, d, center, radius, t)
        else:
            idx = group[_crossing(o[group], d[group], center, radius, t[group])]
        if len(idx) == 0:
            continue
        rot, pos = _object_to_world(obj)
        t_obj, prim = first_hits(obj, (o[idx] - pos) @ rot, d[idx] @ rot)
        better = t_obj < t[idx]
        t[idx[better]], which_obj[idx[better]], which_prim[idx[better]] = t_obj[better], k, prim[better]
    return t, which_obj, which_prim


def contact_shadow(xy: Float[np.ndarray, "n 2"], objects: tuple[SceneObject, ...]) -> Float[np.ndarray, " n"]:
    """Brightness factor in (0, 1] for table points: soft blobs under each footprint circle.

    Each blob is pushed away from the light by half the object's height, so the shading hints at
    where the light comes from. Example: far from every object the factor is 1.
    """
    factor = np.ones(len(xy))
    away = -LIGHT_DIR[:2] / LIGHT_DIR[2]
    for obj in objects:
        center, radius = object_bound(obj)
        shift = away * (center[2] + radius) / 2  # half the object's height
        for x, y, r in world_footprint(obj):
            dist2 = np.sum((xy - [x + shift[0], y + shift[1]]) ** 2, axis=1)
            factor *= 1 - SHADOW_STRENGTH * np.exp(-dist2 / (1.2 * r) ** 2)
    return factor


def shade(scene: DemoScene, points: Float[np.ndarray, "n 3"], which_obj: Int[np.ndarray, " n"],
          which_prim: Int[np.ndarray, " n"]) -> Float[np.ndarray, "n 3"]:
    """Lambertian colour of world surface points; the background colour where which_obj = -1."""
    rgb = np.broadcast_to(np.asarray(BACKGROUND_RGB), (len(points), 3)).copy()
    for k, obj in enumerate(scene.objects):
        sel = np.nonzero(which_obj == k)[0]
        if len(sel) == 0:
            continue
        rot, pos = _object_to_world(obj)
        local = (points[sel] - pos) @ rot
        col = np.zeros((len(sel), 3))
        for j, prim in enumerate(obj.primitives):
            m = which_prim[sel] == j
            if not np.any(m):
                continue
            normal_world = surface_normal(prim, local[m]) @ rot.T
            light = AMBIENT + DIFFUSE * np.clip(normal_world @ LIGHT_DIR, 0.0, None)
            col[m] = albedo(prim.texture, local[m], scene.noise) * light[:, None]
        if k == 0:  # the table receives the fake shadows
            col *= contact_shadow(points[sel, :2], scene.objects[1:])[:, None]
        rgb[sel] = col
    return np.clip(rgb, 0.0, 1.0)


@dataclass(frozen=True)
class PixelRays:
    """Unit ray directions in the camera frame for every sample of every pixel; shared by all views.

    Samples 0..n_colour-1 form the supersample grid whose colours are averaged; sample `centre`
    goes through the pixel centre and gives depth and id.
    """

    dirs_cam: Float[np.ndarray, "s p 3"]  # (sample, pixel in row-major order, xyz)
    n_colour: int
    centre: int
    width: int
    height: int


def pixel_rays(width: int, height: int, supersample: int) -> PixelRays:
    """Camera-frame rays for a (supersample x supersample) grid per pixel plus the pixel centre.

    Pixel (row i, col j) spans [j, j+1] x [i, i+1] and is centred at (j + 0.5, i + 0.5).
    Example: supersample 2 -> sub-pixel offsets (0.25, 0.25), (0.75, 0.25), (0.25, 0.75),
    (0.75, 0.75), then the centre (0.5, 0.5); with an odd supersample the centre is a grid sample.
    """
    fx, fy, cx, cy = intrinsics(width, height)
    grid = (np.arange(supersample) + 0.5) / supersample
    offsets = np.stack(np.meshgrid(grid, grid, indexing="xy"), axis=-1).reshape(-1, 2)
    n_colour = len(offsets)
    at_centre = np.nonzero(np.all(np.isclose(offsets, 0.5), axis=1))[0]
    if len(at_centre):
        centre = int(at_centre[0])
    else:
        offsets, centre = np.concatenate([offsets, [[0.5, 0.5]]]), n_colour
    rows, cols = np.divmod(np.arange(width * height), width)
    u = cols[None, :] + offsets[:, 0:1]  # (samples, pixels)
    v = rows[None, :] + offsets[:, 1:2]
    # OpenGL camera: +x right, +y up (image v grows down), looking down -z.
    dirs = np.stack([(u - cx) / fx, -(v - cy) / fy, -np.ones_like(u)], axis=-1)
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    return PixelRays(dirs_cam=dirs, n_colour=n_colour, centre=centre, width=width, height=height)


@dataclass(frozen=True)
class ViewRender:
    rgb: UInt8[np.ndarray, "h w 3"]
    depth: Float[np.ndarray, "h w"]  # distance along the ray in metres, inf on a miss
    ids: UInt8[np.ndarray, "h w"]  # object ids
    parts: UInt8[np.ndarray, "h w"]  # part ids (see part_ids)


def render_view(scene: DemoScene, c2w: Float[np.ndarray, "4 4"], rays: PixelRays, chunk_rays: int = 1 << 16
                ) -> ViewRender:
    """RGB, depth, object and part ids of one view.

    Colour averages the supersample rays; depth and ids come from the pixel-centre ray, so depth
    is finite exactly where id != 0.
    """
    n_samples, n_pixels = rays.dirs_cam.shape[:2]
    rgb, depth, ids = np.zeros((n_pixels, 3)), np.zeros(n_pixels), np.zeros(n_pixels, np.uint8)
    parts = np.zeros(n_pixels, np.uint8)
    prim_part = part_ids(scene)
    offset = np.cumsum([0] + [len(p) for p in prim_part])  # flat (object, primitive) index
    flat_part = np.concatenate([[0]] + [np.asarray(p) for p in prim_part]).astype(np.uint8)
    step = max(1, chunk_rays // n_samples)
    for start in range(0, n_pixels, step):
        sel = slice(start, min(start + step, n_pixels))
        dirs = rays.dirs_cam[:, sel].reshape(-1, 3) @ c2w[:3, :3].T
        origins = np.broadcast_to(c2w[:3, 3], dirs.shape)
        t, obj, prim = trace(scene, origins, dirs)
        points = origins + np.where(np.isfinite(t), t, 0.0)[:, None] * dirs
        colour = shade(scene, points, obj, prim).reshape(n_samples, -1, 3)
        rgb[sel] = colour[:rays.n_colour].mean(axis=0)
        depth[sel] = t.reshape(n_samples, -1)[rays.centre]
        obj_c, prim_c = obj.reshape(n_samples, -1)[rays.centre], prim.reshape(n_samples, -1)[rays.centre]
        ids[sel] = (obj_c + 1).astype(np.uint8)
        parts[sel] = flat_part[np.where(obj_c >= 0, offset[obj_c] + prim_c + 1, 0)]
    h, w = rays.height, rays.width
    image = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8).reshape(h, w, 3)
    return ViewRender(image, depth.astype(np.float32).reshape(h, w), ids.reshape(h, w), parts.reshape(h, w))


# --------------------------------------------------------------------------- LabelMe-style labels


def connected_components(mask: Bool[np.ndarray, "h w"]) -> tuple[Int[np.ndarray, "h w"], int]:
    """4-connected components of `mask`, labelled 1..count in raster order of their first run.

    Works on horizontal runs of pixels with a union-find, so the Python loop is over runs, not
    pixels. Example: [[1, 0, 1], [1, 0, 0]] -> [[1, 0, 2], [1, 0, 0]], count 2.
    """
    h, w = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows_np, starts_np = np.nonzero(edges == 1)
    ends_np = np.nonzero(edges == -1)[1]  # exclusive; row-major order pairs each start with its end
    row_first = np.searchsorted(rows_np, np.arange(h + 1)).tolist()
    run_row, run_start, run_end = rows_np.tolist(), starts_np.tolist(), ends_np.tolist()  # fast in loops
    parent = list(range(len(run_row)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for row in range(1, h):
        i, i_end = row_first[row - 1], row_first[row]
        j, j_end = row_first[row], row_first[row + 1]
        while i < i_end and j < j_end:  # two sorted run lists: union overlapping runs
            if run_start[i] < run_end[j] and run_start[j] < run_end[i]:
                parent[find(i)] = find(j)
            if run_end[i] < run_end[j]:
                i += 1
            else:
                j += 1
    labels = np.zeros((h, w), dtype=np.int64)
    compact: dict[int, int] = {}
    for k in range(len(run_row)):
        labels[run_row[k], run_start[k]:run_end[k]] = compact.setdefault(find(k), len(compact) + 1)
    return labels, len(compact)


# The 8 neighbours as (d_row, d_col), clockwise on screen (rows grow down) starting east.
_MOORE = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def outer_polygon(piece: Bool[np.ndarray, "h w"]) -> Int[np.ndarray, "k 2"]:
    """The outer boundary of one 4-connected mask: (x, y) = (col, row) centres of its boundary pixels.

    Vertices sit on pixel centres, the convention of LabelMe and of the lerf_ovs reader
    (lerf.evaluation.labels), so filling the polygon with its edges included gives back the mask
    (holes filled). Moore-neighbour tracing walks the boundary clockwise from the first pixel in
    raster order; vertices in the middle of a straight run are dropped.
    Example: a 2x3 block of ones with its top-left at (row 1, col 2) -> (2, 1), (4, 1), (4, 2), (2, 2).
    """
    padded = np.pad(piece, 1)
    rows, cols = np.nonzero(padded)
    start = cur = (int(rows[0]), int(cols[0]))
    back = 4  # the raster-first pixel's west neighbour is empty: pretend we came from there
    path, first_step = [start], None
    while True:
        for turn in range(1, 9):
            step = _MOORE[(back + turn) % 8]
            nxt = (cur[0] + step[0], cur[1] + step[1])
            if padded[nxt]:
                break
        else:
            break  # a lone pixel
        if cur == start and nxt == first_step:
            path.pop()  # back at the start: the last vertex repeats the first
            break
        first_step = first_step or nxt
        prev = _MOORE[(back + turn - 1) % 8]  # the last empty neighbour examined, relative to cur
        back = _MOORE.index((cur[0] + prev[0] - nxt[0], cur[1] + prev[1] - nxt[1]))
        path.append(nxt)
        cur = nxt
    xy = np.array(path, dtype=np.int64)[:, ::-1] - 1  # (row, col) padded -> (x, y)
    into, out_of = xy - np.roll(xy, 1, axis=0), np.roll(xy, -1, axis=0) - xy
    cross = into[:, 0] * out_of[:, 1] - into[:, 1] * out_of[:, 0]
    straight = (cross == 0) & (np.sum(into * out_of, axis=1) > 0)
    return xy[~straight] if len(xy) > 2 else xy


def min_label_pixels(height: int, width: int) -> int:
    return max(20, round(MIN_LABEL_FRAC * height * width))


def _pieces(mask: Bool[np.ndarray, "h w"], min_pixels: int) -> list[Bool[np.ndarray, "h w"]]:
    labels, count = connected_components(mask)
    pieces = [labels == k for k in range(1, count + 1)]
    return [p for p in pieces if p.sum() >= min_pixels]


def _box(mask: Bool[np.ndarray, "h w"]) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def frame_labels(ids: UInt8[np.ndarray, "h w"], parts: UInt8[np.ndarray, "h w"], hier: dict,
                 min_pixels: int | None = None) -> list[dict]:
    """LabelMe-style entries (lerf_ovs format) at three levels, "level": part | object | group (an
    extra key: lerf_ovs readers ignore it).

    Parts and objects: one entry per visible piece. Groups: one entry per group with at least two
    members in view, whose bbox encloses all of them (a group is the region holding its members,
    gaps included) and whose segmentation is the list of the members' piece polygons (the mask
    is their union). bbox is [x1, y1, x2, y2] in pixels with x2, y2 the last pixel (inclusive, as
    LangSplat's lerf_ovs box test reads them). Pieces below `min_pixels` (default
    `min_label_pixels`) are dropped: a few stray pixels make no useful query.
    """
    min_pixels = min_label_pixels(*ids.shape) if min_pixels is None else min_pixels
    entries = []

    def piece_entry(level: str, name: str, piece: np.ndarray) -> dict:
        return {"category": name, "level": level, "bbox": _box(piece),
                "segmentation": outer_polygon(piece).astype(float).tolist()}

    for pid, part in hier["parts"].items():
        if part["name"]:
            entries += [piece_entry("part", part["name"], p) for p in _pieces(parts == int(pid), min_pixels)]
    for oid, obj in hier["objects"].items():
        if int(oid) > TABLE_ID:
            entries += [piece_entry("object", obj["name"], p) for p in _pieces(ids == int(oid), min_pixels)]
    for group in GROUPS:
        members = [int(oid) for oid, o in hier["objects"].items() if o["group"] == group]
        seen = [pieces for m in members if (pieces := _pieces(ids == m, min_pixels))]
        if len(seen) >= 2:
            pieces = [p for member in seen for p in member]
            entries.append({"category": group, "level": "group", "bbox": _box(np.any(pieces, axis=0)),
                            "segmentation": [outer_polygon(p).astype(float).tolist() for p in pieces]})
    return entries


# --------------------------------------------------------------------------- writing the scene


def _frame_name(k: int) -> str:
    return f"frame_{k + 1:05d}"


_OUTPUTS = ("images", "depths", "ids", "parts", "labels", "transforms.json", "labels.json")


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out}: directory exists and is not empty; refusing to overwrite it. "
                                  "Pass overwrite=True (CLI: --overwrite) or choose an empty directory.")
        for name in _OUTPUTS:  # only what a demo scene writes; anything else in the folder stays
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    for sub in ("images", "depths", "ids", "parts", "labels"):
        (out / sub).mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, data: dict, indent: int | None = 1) -> None:
    write_json(path, data, indent=indent)


def generate_demo_scene(out_dir: str | Path, seed: int = 0, num_views: int = 48, width: int = 128, height: int = 128,
                        supersample: int = 2, overwrite: bool = False, *, progress: bool = False) -> Path:
    """Render the demo scene for `seed` into `out_dir` (see the module docstring for the layout).

    transforms.json is written last, so its presence means every frame's files are on disk.
    Raises FileExistsError if `out_dir` holds anything and `overwrite` is False.
    """
    if num_views < 1 or width < 1 or height < 1 or supersample < 1:
        raise ValueError(f"num_views, width, height and supersample must be >= 1, got "
                         f"{num_views}, {width}, {height}, {supersample}")
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    scene = build_demo_scene(seed)
    names = {TABLE_ID: "table"} | {TABLE_ID + 1 + i: n for i, n in enumerate(DEMO_OBJECT_NAMES)}
    hier = hierarchy(scene)
    fx, fy, cx, cy = intrinsics(width, height)
    rays = pixel_rays(width, height, supersample)
    frames = []
    for k, c2w in enumerate(tqdm(camera_poses(num_views), desc="demo scene views", disable=not progress)):
        view = render_view(scene, c2w, rays)
        name = _frame_name(k)
        Image.fromarray(view.rgb).save(out / "images" / f"{name}.png")
        save_npy(out / "depths" / f"{name}.npy", view.depth)
        Image.fromarray(view.ids).save(out / "ids" / f"{name}.png")
        Image.fromarray(view.parts).save(out / "parts" / f"{name}.png")
        if k % EVAL_EVERY == 0:
            label = {"info": {"name": f"{name}.png", "height": height, "width": width},
                     "objects": frame_labels(view.ids, view.parts, hier)}
            _write_json(out / "labels" / f"{name}.json", label, indent=None)  # polygons: one line each file
        frames.append({"file_path": f"images/{name}.png", "transform_matrix": c2w.tolist(),
                       "depth_file_path": f"depths/{name}.npy", "mask_id_path": f"ids/{name}.png",
                       "part_id_path": f"parts/{name}.png"})
    groups = {g: [i for i, n in names.items() if n in members] for g, members in GROUPS.items()}
    _write_json(out / "labels.json", {"objects": {str(i): n for i, n in names.items()}, "seed": seed,
                                      "background_id": 0,
                                      "object_centers_m": {str(i): c for i, c in object_centers(scene).items()},
                                      "groups": groups, "hierarchy": hier})
    _write_json(out / "transforms.json", {
        "camera_model": "PINHOLE", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": width, "h": height,
        "background_color": list(BACKGROUND_RGB), "scene_units": "metres", "frames": frames})
    return out


def _is_complete(root: Path, num_views: int, width: int, height: int) -> bool:
    """Whether `root` holds a full demo scene of this size (every file transforms.json names exists)."""
    try:
        meta = json.loads((root / "transforms.json").read_text())
    except (OSError, ValueError):
        return False
    frames = meta.get("frames", [])
    if len(frames) != num_views or (meta.get("w"), meta.get("h")) != (width, height):
        return False
    if not (root / "labels.json").is_file():
        return False
    keys = ("file_path", "depth_file_path", "mask_id_path", "part_id_path")
    return all(isinstance(f, dict) and isinstance(f.get(key), str) and (root / f[key]).is_file()
               for f in frames for key in keys)


def demo_scene_dir(cache_root: str | Path, seed: int, num_views: int, width: int, height: int) -> Path:
    """Where `ensure_demo_scene` keeps the scene made with these settings."""
    return Path(cache_root) / f"demo_s{seed}_{num_views}v_{width}x{height}"


def ensure_demo_scene(cache_root: str | Path, seed: int = 0, num_views: int = 48, width: int = 128,
                      height: int = 128) -> Path:
    """<cache_root>/demo_s{seed}_{num_views}v_{width}x{height}, generated first if missing or incomplete.

    Made once, crash- and race-safe (`lerf.data.atomic.build_directory_once`).
    """
    final = demo_scene_dir(cache_root, seed, num_views, width, height)

    def build(path: Path) -> None:
        log.info("generating the demo scene (seed %d, %d views, %dx%d) at %s", seed, num_views, width, height, final)
        generate_demo_scene(path, seed=seed, num_views=num_views, width=width, height=height)

    return build_directory_once(final, lambda p: _is_complete(p, num_views, width, height), build)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render the synthetic LERF demo scene as a nerfstudio scene.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--views", type=int, default=48)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--supersample", type=int, default=2)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing demo scene in OUT_DIR")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = generate_demo_scene(args.out_dir, seed=args.seed, num_views=args.views, width=args.width,
                              height=args.height, supersample=args.supersample, overwrite=args.overwrite,
                              progress=True)
    print(f"wrote {args.views} views ({args.width}x{args.height}) to {out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
