"""The synthetic demo scene: files, determinism, camera convention, labels, and the ray caster."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lerf.demo import shapes
from lerf.demo.scene import (CAMERA_RADIUS_M, DEMO_OBJECT_NAMES, GROUP_GAP_M, GROUPS, TABLE_RADIUS_M,
                                  build_demo_scene, camera_poses, connected_components, ensure_demo_scene,
                                  generate_demo_scene, outer_polygon, world_footprint)

VIEWS, W, H = 8, 72, 64  # non-square, so a swapped width/height shows up


@pytest.fixture(scope="module")
def scene0(tmp_path_factory) -> Path:
    return generate_demo_scene(tmp_path_factory.mktemp("s0") / "scene", seed=0, num_views=VIEWS, width=W, height=H)


def _frames(root: Path) -> list[dict]:
    return json.loads((root / "transforms.json").read_text())["frames"]


def _ids(root: Path, frame: dict) -> np.ndarray:
    return np.asarray(Image.open(root / frame["mask_id_path"]))


def _depth(root: Path, frame: dict) -> np.ndarray:
    return np.load(root / frame["depth_file_path"])


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(scene0, tmp_path):
    again = generate_demo_scene(tmp_path / "again", seed=0, num_views=VIEWS, width=W, height=H)
    assert _all_files(again) == _all_files(scene0)


def test_different_seeds_differ_in_layout_and_colour(scene0, tmp_path):
    other = generate_demo_scene(tmp_path / "s1", seed=1, num_views=VIEWS, width=W, height=H)
    centres = [json.loads((r / "labels.json").read_text())["object_centers_m"] for r in (scene0, other)]
    assert centres[0].keys() == centres[1].keys()
    for key in centres[0]:  # every object moved
        assert np.linalg.norm(np.subtract(centres[0][key][:2], centres[1][key][:2])) > 1e-3
    img0 = np.asarray(Image.open(scene0 / "images/frame_00001.png"))
    img1 = np.asarray(Image.open(other / "images/frame_00001.png"))
    assert np.mean(img0 != img1) > 0.1


def test_transforms_json_matches_the_files(scene0):
    meta = json.loads((scene0 / "transforms.json").read_text())
    assert meta["camera_model"] == "PINHOLE" and (meta["w"], meta["h"]) == (W, H)
    assert meta["scene_units"] == "metres"
    assert len(meta["background_color"]) == 3 and all(0 <= c <= 1 for c in meta["background_color"])
    # about 50 degrees horizontal field of view
    assert np.degrees(2 * np.arctan(0.5 * W / meta["fl_x"])) == pytest.approx(50, abs=1)
    assert [f["file_path"] for f in meta["frames"]] == [f"images/frame_{k + 1:05d}.png" for k in range(VIEWS)]
    for frame in meta["frames"]:
        c2w = np.asarray(frame["transform_matrix"])
        assert c2w.shape == (4, 4) and np.allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-9)
        img = Image.open(scene0 / frame["file_path"])
        assert img.mode == "RGB" and img.size == (W, H)
        ids = Image.open(scene0 / frame["mask_id_path"])
        assert ids.mode == "L" and ids.size == (W, H)
        depth = _depth(scene0, frame)
        assert depth.dtype == np.float32 and depth.shape == (H, W)


def test_background_pixels_have_the_background_colour(scene0):
    meta = json.loads((scene0 / "transforms.json").read_text())
    expected = np.round(np.asarray(meta["background_color"]) * 255)
    for frame in meta["frames"]:
        ids = _ids(scene0, frame)
        rgb = np.asarray(Image.open(scene0 / frame["file_path"])).astype(float)
        # pixels whose 3x3 neighbourhood is all background carry no anti-aliased object colour
        bg = ids == 0
        inner = bg[1:-1, 1:-1] & bg[:-2, 1:-1] & bg[2:, 1:-1] & bg[1:-1, :-2] & bg[1:-1, 2:]
        assert inner.any()
        assert np.abs(rgb[1:-1, 1:-1][inner] - expected).max() <= 1


def test_every_object_is_named_and_visible(scene0):
    labels = json.loads((scene0 / "labels.json").read_text())
    assert labels["seed"] == 0 and labels["background_id"] == 0
    assert labels["objects"]["1"] == "table"
    assert sorted(v for k, v in labels["objects"].items() if k != "1") == sorted(DEMO_OBJECT_NAMES)
    assert len(DEMO_OBJECT_NAMES) >= 6
    counts = np.bincount(np.concatenate([_ids(scene0, f).ravel() for f in _frames(scene0)]), minlength=8)
    for key in labels["objects"]:
        assert counts[int(key)] > 20, f"{labels['objects'][key]} is never visible"
    # each object is seen in several views (close-ups frame only part of the table)
    for key in labels["objects"]:
        views = sum(np.any(_ids(scene0, f) == int(key)) for f in _frames(scene0))
        assert views >= VIEWS // 4, labels["objects"][key]


def test_depth_is_finite_exactly_where_something_is_hit(scene0):
    for frame in _frames(scene0):
        depth, ids = _depth(scene0, frame), _ids(scene0, frame)
        assert np.array_equal(np.isfinite(depth), ids != 0)
        assert np.all(depth[ids != 0] > 0.2) and np.all(depth[ids != 0] < 2.0)  # metres, cameras 0.55-1.25 m away


def _pixel_rays(frame: dict, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Unit world ray directions (h, w, 3) through pixel centres, and the origin, written out by hand
    from the OpenGL convention: camera looks down -z, +y up, image rows grow downwards."""
    c2w = np.asarray(frame["transform_matrix"])
    j, i = np.meshgrid(np.arange(meta["w"]) + 0.5, np.arange(meta["h"]) + 0.5)
    cam = np.stack([(j - meta["cx"]) / meta["fl_x"], -(i - meta["cy"]) / meta["fl_y"], -np.ones_like(i)], -1)
    cam /= np.linalg.norm(cam, axis=-1, keepdims=True)
    return cam @ c2w[:3, :3].T, c2w[:3, 3]


def test_depth_and_poses_put_table_pixels_on_the_table_top(scene0):
    meta = json.loads((scene0 / "transforms.json").read_text())
    centres = json.loads((scene0 / "labels.json").read_text())["object_centers_m"]
    for frame in meta["frames"]:
        dirs, origin = _pixel_rays(frame, meta)
        ids, depth = _ids(scene0, frame), _depth(scene0, frame)
        points = origin + depth[..., None] * dirs
        table = points[ids == 1]
        radius = np.linalg.norm(table[:, :2], axis=1)
        on_top = (np.abs(table[:, 2]) < 1e-4) & (radius < TABLE_RADIUS_M + 1e-4)
        on_rim = (np.abs(radius - TABLE_RADIUS_M) < 1e-4) & (table[:, 2] < 1e-4) & (table[:, 2] > -0.031)
        assert np.all(on_top | on_rim) and on_top.mean() > 0.8
        for key, centre in centres.items():  # object pixels land on their own object
            on_obj = points[ids == int(key)]
            if len(on_obj):
                assert np.linalg.norm(on_obj[:, :2] - centre[:2], axis=1).max() < 0.15


def test_projecting_object_centres_lands_on_their_ids(scene0):
    meta = json.loads((scene0 / "transforms.json").read_text())
    centres = json.loads((scene0 / "labels.json").read_text())["object_centers_m"]
    hits = total = 0
    for frame in meta["frames"]:
        w2c = np.linalg.inv(np.asarray(frame["transform_matrix"]))
        ids = _ids(scene0, frame)
        for key, centre in centres.items():
            x, y, z = w2c[:3, :3] @ centre + w2c[:3, 3]
            assert z < 0  # in front of an OpenGL camera
            col = int(np.floor(meta["cx"] + meta["fl_x"] * x / -z))
            row = int(np.floor(meta["cy"] - meta["fl_y"] * y / -z))  # image rows grow downwards
            if not (0 <= col < meta["w"] and 0 <= row < meta["h"]):
                continue  # a close-up frames part of the table only
            hits += ids[row, col] == int(key)
            total += 1
    assert total >= 0.6 * len(meta["frames"]) * len(centres)
    assert hits >= 0.8 * total  # the rest are occluded by another object


def test_cameras_circle_the_table_at_distances_varying_twofold():
    poses = camera_poses(48)
    eyes, forward = poses[:, :3, 3], -poses[:, :3, 2]
    # where each optical axis meets the table top (z = 0): on the table, near the objects
    t = -eyes[:, 2] / forward[:, 2]
    hits = eyes + t[:, None] * forward
    assert np.all(forward[:, 2] < 0) and np.all(np.linalg.norm(hits[:, :2], axis=1) < 0.3)
    dist = np.linalg.norm(hits - eyes, axis=1)
    assert dist.max() / dist.min() >= 2.0  # close-ups and wide views
    assert dist.min() > 0.9 * CAMERA_RADIUS_M[0] and dist.max() < 1.2 * CAMERA_RADIUS_M[1]
    held_out = dist[::8]
    assert held_out.max() / held_out.min() > 1.8  # the evaluation sees both kinds too
    elevation = np.degrees(np.arcsin(-forward[:, 2]))
    assert elevation.min() > 20 and elevation.max() < 75
    azimuth = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0])) % 360
    assert np.histogram(azimuth, bins=8, range=(0, 360))[0].min() > 0
    assert np.all(poses[:, 2, 1] > 0)  # camera +y has a world-up component


def test_group_members_stand_together():
    for seed in range(4):
        scene = build_demo_scene(seed)
        by_name = {o.name: o for o in scene.objects[1:]}
        for members in GROUPS.values():
            a, b = (world_footprint(by_name[m]) for m in members)
            gap = np.linalg.norm(a[:, None, :2] - b[None, :, :2], axis=-1) - a[:, None, 2] - b[None, :, 2]
            assert 0 < gap.min() <= GROUP_GAP_M + 1e-9


def _level_mask(root: Path, frame: dict, level: str, category: str) -> np.ndarray:
    """The ground-truth mask of one part, object or group, straight from the id images."""
    labels = json.loads((root / "labels.json").read_text())
    ids = _ids(root, frame)
    if level == "part":
        parts = np.asarray(Image.open(root / frame["part_id_path"]))
        pids = [int(k) for k, p in labels["hierarchy"]["parts"].items() if p["name"] == category]
        return np.isin(parts, pids)
    if level == "object":
        return np.isin(ids, [int(k) for k, n in labels["objects"].items() if n == category])
    return np.isin(ids, labels["groups"][category])


def test_held_out_frames_have_labels_at_three_levels_matching_the_masks(scene0):
    from lerf.evaluation.labels import load_label_file, rasterize_polygons

    frames = _frames(scene0)
    assert sorted(p.name for p in (scene0 / "labels").iterdir()) == [
        f"frame_{k + 1:05d}.json" for k in range(VIEWS) if k % 8 == 0]
    meta = json.loads((scene0 / "labels.json").read_text())
    part_names = {p["name"] for p in meta["hierarchy"]["parts"].values() if p["name"]}
    expected = {"part": part_names, "object": set(DEMO_OBJECT_NAMES), "group": set(GROUPS)}
    levels_seen = set()
    for path in (scene0 / "labels").iterdir():
        data = json.loads(path.read_text())
        k = int(path.stem.split("_")[1]) - 1
        assert data["info"] == {"name": f"{path.stem}.png", "height": H, "width": W}
        covered: dict[tuple[str, str], np.ndarray] = {}
        for obj in data["objects"]:
            level, category = obj["level"], obj["category"]
            assert category in expected[level]
            levels_seen.add(level)
            mask = _level_mask(scene0, frames[k], level, category)
            x1, y1, x2, y2 = obj["bbox"]
            inside = np.zeros_like(mask)
            inside[y1:y2 + 1, x1:x2 + 1] = True
            polygons = obj["segmentation"] if level == "group" else [obj["segmentation"]]
            piece = rasterize_polygons([np.asarray(p, dtype=float) for p in polygons], H, W)
            # the filled polygons are (almost) all this thing: only holes, like the mug handle's, are not
            assert piece.sum() >= 20 and mask[piece].mean() > 0.85
            if level == "group":  # at least two members in view, the box encloses them all
                members = {int(i) for i in np.unique(_ids(scene0, frames[k])[piece])} & set(meta["groups"][category])
                assert len(polygons) >= 2 and len(members) >= 2
            assert np.all(piece <= inside)  # the box is tight around the polygon, x2/y2 inclusive
            rows, cols = np.nonzero(piece)
            assert (cols.min(), rows.min(), cols.max(), rows.max()) == (x1, y1, x2, y2)
            covered[level, category] = covered.get((level, category), np.zeros_like(mask)) | piece
        for (level, category), cover in covered.items():  # the polygons cover the mask, but for tiny pieces
            assert np.sum(_level_mask(scene0, frames[k], level, category) & ~cover) < 40
        labels = load_label_file(path)
        assert {c: lab.level for c, lab in labels.categories.items()} == {
            o["category"]: o["level"] for o in data["objects"]}
    assert levels_seen == {"part", "object", "group"}


def test_refuses_to_overwrite_a_non_empty_directory(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=str(out)):
        generate_demo_scene(out, num_views=2, width=16, height=16)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    generate_demo_scene(out, num_views=2, width=16, height=16, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"  # overwrite only replaces the scene's own files
    assert (out / "transforms.json").is_file()


def test_ensure_demo_scene_generates_once_and_repairs(tmp_path):
    root = ensure_demo_scene(tmp_path, seed=3, num_views=2, width=16, height=16)
    assert root == tmp_path / "demo_s3_2v_16x16"
    left = lambda: [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")]  # noqa: E731
    assert left() == [root.name]  # no temporary folders left (the generation lock file stays)
    stamp = (root / "transforms.json").stat().st_mtime_ns
    assert ensure_demo_scene(tmp_path, seed=3, num_views=2, width=16, height=16) == root
    assert (root / "transforms.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    (root / "images/frame_00002.png").unlink()  # damage it: the next call rebuilds it
    ensure_demo_scene(tmp_path, seed=3, num_views=2, width=16, height=16)
    assert (root / "images/frame_00002.png").is_file()
    assert left() == [root.name]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_views"):
        generate_demo_scene("/nonexistent/never_written", num_views=0)


# --------------------------------------------------------------------------- the ray caster


def _inside(prim: shapes.Primitive, p: np.ndarray) -> np.ndarray:
    """Slow reference: the solid's implicit inside test."""
    p0, p1, r = np.asarray(prim.p0), np.asarray(prim.p1), prim.radii[0]
    if prim.kind == "ellipsoid":
        return np.sum(((p - p0) / np.asarray(prim.radii)) ** 2, axis=-1) <= 1
    if prim.kind == "capsule":
        ba = p1 - p0
        h = np.clip((p - p0) @ ba / (ba @ ba), 0, 1)
        return np.linalg.norm(p - p0 - h[..., None] * ba, axis=-1) <= r
    return (np.linalg.norm(p[..., :2] - p0[:2], axis=-1) <= r) & (p[..., 2] >= p0[2]) & (p[..., 2] <= p1[2])


@pytest.mark.parametrize("prim", [
    shapes.ellipsoid((0.1, -0.05, 0.2), (0.3, 0.2, 0.1), shapes.Texture("solid", ((1.0, 1.0, 1.0),))),
    shapes.capsule((-0.2, 0.1, 0.0), (0.25, -0.1, 0.3), 0.12, shapes.Texture("solid", ((1.0, 1.0, 1.0),))),
    shapes.cylinder((0.05, 0.0, -0.2), 0.35, 0.25, shapes.Texture("solid", ((1.0, 1.0, 1.0),))),
])
def test_closed_form_hits_agree_with_marching_the_inside_test(prim):
    rng = np.random.default_rng(0)
    origins = rng.normal(size=(400, 3))
    origins = 2.0 * origins / np.linalg.norm(origins, axis=1, keepdims=True)
    targets = rng.uniform(-0.35, 0.35, size=(400, 3))
    dirs = (targets - origins) / np.linalg.norm(targets - origins, axis=1, keepdims=True)
    t = shapes.intersect(prim, origins, dirs)
    steps = np.linspace(0, 4, 4001)  # 1 mm steps
    inside = _inside(prim, origins[:, None] + steps[None, :, None] * dirs[:, None])
    first = np.where(inside.any(1), steps[np.argmax(inside, axis=1)], np.inf)
    hit = np.isfinite(first)
    assert hit.mean() > 0.15 and np.array_equal(np.isfinite(t), hit)
    assert np.all(np.abs(t[hit] - first[hit]) <= 1.5e-3)
    # the normal points back towards the camera at the hit
    n = shapes.surface_normal(prim, origins[hit] + t[hit, None] * dirs[hit])
    assert np.all(np.einsum("ij,ij->i", n, dirs[hit]) < 1e-9)


def test_intersection_worked_examples():
    white = shapes.Texture("solid", ((1.0, 1.0, 1.0),))
    o, d = np.array([[0.0, 0.0, 5.0]]), np.array([[0.0, 0.0, -1.0]])
    assert shapes.intersect(shapes.sphere((0.0, 0.0, 0.0), 1.0, white), o, d)[0] == pytest.approx(4.0)
    o2 = np.array([[0.5, 0.0, 3.0]])
    capsule = shapes.capsule((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), 0.5, white)
    assert shapes.intersect(capsule, o2, d)[0] == pytest.approx(2.5)
    assert np.isinf(shapes.intersect(shapes.sphere((0.0, 0.0, 0.0), 1.0, white), o, -d)[0])  # behind the ray


def test_bands_texture_blends_at_its_edge():
    tex = shapes.Texture("bands", ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)), coord="z", edges=(0.05,), soft=0.002)
    noise = shapes.make_noise(np.random.default_rng(0))
    rgb = shapes.albedo(tex, np.array([[0.0, 0.0, 0.01], [0.0, 0.0, 0.09], [0.0, 0.0, 0.05]]), noise)
    assert np.allclose(rgb, [[1, 0, 0], [0, 0, 1], [0.5, 0, 0.5]])


def test_value_noise_is_smooth_and_in_range():
    noise = shapes.make_noise(np.random.default_rng(1))
    p = np.random.default_rng(2).uniform(-5, 5, size=(2000, 3))
    v = shapes.value_noise(p, noise)
    assert v.min() >= 0 and v.max() <= 1 and v.std() > 0.05
    assert np.abs(shapes.value_noise(p + 1e-4, noise) - v).max() < 1e-3


def test_connected_components_and_boundary_polygon():
    labels, count = connected_components(np.array([[1, 0, 1], [1, 0, 0]], dtype=bool))
    assert count == 2 and labels.tolist() == [[1, 0, 2], [1, 0, 0]]
    # diagonal neighbours are separate pieces (4-connectivity)
    assert connected_components(np.eye(3, dtype=bool))[1] == 3
    block = np.zeros((5, 6), dtype=bool)
    block[1:3, 2:5] = True
    assert sorted(outer_polygon(block).tolist()) == [[2, 1], [2, 2], [4, 1], [4, 2]]


def test_loaded_camera_z_depth_is_exact_and_the_same_every_time(scene0):
    # The z-depth feeds the reference CLIP pyramid's cache key (metres per pixel): torch's threaded
    # float32 kernels once gave different depths on some loads, so every run rebuilt the pyramid.
    from lerf.config import SceneConfig
    from lerf.data.scene import load_scene

    cfg = SceneConfig(name="demo", kind="nerfstudio", path=str(scene0))
    loads = [load_scene(cfg).demo.depth_z_m for _ in range(3)]
    meta = json.loads((scene0 / "transforms.json").read_text())
    for k, frame in enumerate(meta["frames"]):
        x = ((np.arange(meta["w"]) + 0.5 - meta["cx"]) / meta["fl_x"])[None]
        y = ((np.arange(meta["h"]) + 0.5 - meta["cy"]) / meta["fl_y"])[:, None]
        expected = _depth(scene0, frame).astype(np.float64) / np.sqrt(1 + x * x + y * y)  # distance -> z
        assert np.allclose(loads[0][k].numpy(), expected, rtol=1e-6)
    assert all(np.array_equal(x.numpy(), loads[0].numpy()) for x in loads[1:])
