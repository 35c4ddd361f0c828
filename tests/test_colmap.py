"""scene.kind=colmap: models written by pycolmap from known cameras must give the known rays."""
from __future__ import annotations

import numpy as np
import pycolmap
import pytest
import torch

from lerf.config import SceneConfig
from lerf.data.cameras import camera_rays
from lerf.data.colmap import read_colmap
from lerf.data.nerfstudio import SceneFormatError
from lerf.data.scene import load_scene
from tests.colmap_helpers import pinhole_rays, project, ring_frames, write_colmap_capture, write_images, write_model

W, H = 12, 8


def _scene(root, cameras, frames, fmt="bin", **kw):
    write_model(root / "sparse" / "0", cameras, frames, fmt, **kw)
    return write_images(root / "images", frames, W, H)


def _pixels():
    v, u = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
    return u.ravel(), v.ravel()


def _project_rays(cameras, k):
    u, v = _pixels()
    idx = torch.full((u.size,), k, dtype=torch.long)
    o, d, _ = camera_rays(cameras, idx, torch.tensor(u, dtype=torch.float32), torch.tensor(v, dtype=torch.float32))
    return o.double().numpy(), d.double().numpy()


@pytest.mark.parametrize("fmt", ["bin", "txt"])
@pytest.mark.parametrize("rigs", [True, False])
def test_rays_equal_the_known_cameras(tmp_path, fmt, rigs):
    frames = ring_frames(4, camera_ids=[1, 2, 1, 2])
    cams = {1: ("PINHOLE", [10.0, 11.0, 6.2, 3.9], W, H), 2: ("SIMPLE_PINHOLE", [9.0, 5.5, 4.5], W, H)}
    images = _scene(tmp_path, cams, frames, fmt)
    if not rigs:  # a model as written before COLMAP had rigs: cameras, images, points3D only
        for name in ("rigs", "frames"):
            (tmp_path / "sparse" / "0" / f"{name}.{fmt}").unlink()
    raw = read_colmap(tmp_path)
    assert raw.frame_names == [f"images/{f.name}" for f in frames]
    for k, f in enumerate(frames):
        model, params, *_ = cams[f.camera_id]
        fx, fy, cx, cy = (params if model == "PINHOLE" else [params[0], params[0], params[1], params[2]])
        o_known, d_known = pinhole_rays(f, fx, fy, cx, cy, *_pixels())
        o, d = _project_rays(raw.cameras, k)
        np.testing.assert_allclose(o, np.broadcast_to(o_known, o.shape), atol=1e-5)
        np.testing.assert_allclose(d, d_known, atol=1e-5)
        np.testing.assert_array_equal(raw.images[k].numpy(), images[k])


def test_normalised_scene_keeps_the_known_rays(tmp_path):
    frames = ring_frames(5)
    cams = {1: ("PINHOLE", [10.0, 10.0, 6.0, 4.0], W, H)}
    _scene(tmp_path, cams, frames, reverse_ids=True)  # ids in reverse order: frames still sorted by name
    scene = load_scene(SceneConfig(name="c", kind="colmap", path=str(tmp_path), eval_every=0))
    assert [n.split("/")[-1] for n in scene.frame_names] == [f.name for f in frames]
    for k, f in enumerate(frames):
        o_known, d_known = pinhole_rays(f, 10.0, 10.0, 6.0, 4.0, *_pixels())
        o, d = _project_rays(scene.cameras, k)
        world = scene.to_world(torch.tensor(o[:1], dtype=torch.float32)).double().numpy()[0]
        np.testing.assert_allclose(world, o_known, atol=1e-5)
        np.testing.assert_allclose(d, d_known, atol=1e-5)


DISTORTED = {
    "SIMPLE_RADIAL": [10.0, 6.1, 3.9, -0.08],
    "RADIAL": [10.0, 6.1, 3.9, -0.06, 0.01],
    "OPENCV": [10.0, 10.5, 6.1, 3.9, -0.05, 0.01, 0.002, -0.003],
    "PINHOLE": [10.0, 10.5, 6.1, 3.9],
    "SIMPLE_PINHOLE": [10.0, 6.1, 3.9],
}


@pytest.mark.parametrize("model", sorted(DISTORTED))
def test_each_camera_model_maps_its_distortion(tmp_path, model):
    frames = ring_frames(2)
    params = DISTORTED[model]
    _scene(tmp_path, {1: (model, params, W, H)}, frames)
    raw = read_colmap(tmp_path)
    u, v = _pixels()
    for k, f in enumerate(frames):
        _, d = _project_rays(raw.cameras, k)
        # the project's ray through (u, v), projected by the model's forward formula, lands on (u, v)
        np.testing.assert_allclose(project(f, model, params, d), np.stack([u, v], -1), atol=1e-3)
        # and COLMAP's own projection agrees
        cam = pycolmap.Camera.create_from_model_name(1, model, 1.0, W, H)
        cam.params = params
        np.testing.assert_allclose(cam.img_from_cam(d @ f.rot.T), np.stack([u, v], -1), atol=1e-3)


def test_shared_and_per_image_cameras(tmp_path):
    frames = ring_frames(3, camera_ids=[1, 2, 3])
    cams = {i: ("PINHOLE", [8.0 + i, 9.0 + i, 6.0, 4.0], W, H) for i in (1, 2, 3)}
    _scene(tmp_path / "per", cams, frames)
    per = read_colmap(tmp_path / "per").cameras
    assert per.fx_px.tolist() == [9.0, 10.0, 11.0] and per.fy_px.tolist() == [10.0, 11.0, 12.0]
    shared_frames = ring_frames(3)
    _scene(tmp_path / "shared", {1: ("OPENCV", [9.0, 9.5, 6.0, 4.0, 0.1, 0.0, 0.0, 0.0], W, H)}, shared_frames)
    shared = read_colmap(tmp_path / "shared").cameras
    assert shared.fx_px.tolist() == [9.0] * 3 and shared.distortion[:, 0].tolist() == pytest.approx([0.1] * 3)


def test_downscaled_folder_scales_the_intrinsics(tmp_path):
    frames = ring_frames(2)
    params = [10.0, 11.0, 6.0, 4.0]
    full_images = _scene(tmp_path, {1: ("PINHOLE", params, W, H)}, frames)
    half = write_images(tmp_path / "images_2", frames, W // 2, H // 2, seed=7)
    raw = read_colmap(tmp_path, downscale=2)
    assert (raw.cameras.width, raw.cameras.height) == (W // 2, H // 2)
    assert [raw.cameras.fx_px[0], raw.cameras.fy_px[0], raw.cameras.cx_px[0], raw.cameras.cy_px[0]] == [5, 5.5, 3, 2]
    np.testing.assert_array_equal(raw.images[1].numpy(), half[1])  # read from images_2/, not resized
    # the half-size camera sees the same rays through the same points of the image
    full = read_colmap(tmp_path).cameras
    u, v = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 0.5])
    idx = torch.zeros(2, dtype=torch.long)
    torch.testing.assert_close(camera_rays(raw.cameras, idx, u, v)[1], camera_rays(full, idx, 2 * u, 2 * v)[1])
    (tmp_path / "images_2" / frames[0].name).unlink()  # no downscaled file: the original, resized on load
    blocks = full_images[0].reshape(H // 2, 2, W // 2, 2, 3).astype(float).mean(axis=(1, 3))
    np.testing.assert_allclose(read_colmap(tmp_path, downscale=2).images[0].numpy(), blocks, atol=0.51)


def test_missing_parts_and_unsupported_models_are_clear_errors(tmp_path):
    frames = ring_frames(2)
    with pytest.raises(SceneFormatError, match="scene directory not found"):
        read_colmap(tmp_path / "nowhere")
    _scene(tmp_path / "a", {1: ("PINHOLE", [10.0, 10.0, 6.0, 4.0], W, H)}, frames)
    (tmp_path / "a" / "images").rename(tmp_path / "a" / "pictures")
    with pytest.raises(SceneFormatError, match=r"no images/ folder"):
        read_colmap(tmp_path / "a")
    (tmp_path / "a" / "pictures").rename(tmp_path / "a" / "images")
    (tmp_path / "a" / "sparse" / "0").rename(tmp_path / "a" / "model")
    with pytest.raises(SceneFormatError, match=r"sparse/0/cameras.bin"):
        read_colmap(tmp_path / "a")
    _scene(tmp_path / "b", {1: ("OPENCV_FISHEYE", [10.0, 10.0, 6.0, 4.0, 0.1, 0.0, 0.0, 0.0], W, H)}, frames)
    with pytest.raises(SceneFormatError, match=r"sparse/0: camera 1 has model OPENCV_FISHEYE; supported: SIMPLE_PIN"):
        read_colmap(tmp_path / "b")
    _scene(tmp_path / "c", {1: ("PINHOLE", [10.0, 10.0, 6.0, 4.0], W, H)}, frames)
    (tmp_path / "c" / "images" / frames[1].name).unlink()
    with pytest.raises(SceneFormatError, match=r"frame_00002.png.*not found"):
        read_colmap(tmp_path / "c")
    (tmp_path / "c" / "sparse" / "0" / "images.bin").write_bytes(b"\x01\x02")
    with pytest.raises(SceneFormatError, match="cannot read the COLMAP model"):
        read_colmap(tmp_path / "c")
    with pytest.raises(SceneFormatError, match="scene.path is not set"):
        load_scene(SceneConfig(name="x", kind="colmap"))


def test_the_real_capture_reads_the_same_as_colmap_and_nerfstudio(tmp_path):
    """tests/test_real_path.py trains one generated capture in both formats: pycolmap's model of it
    (OPENCV, one camera per image, centimetres) must give the cameras its transforms.json gives."""
    from lerf.data.nerfstudio import read_nerfstudio
    from tests.real_capture import write_capture

    colmap = read_colmap(write_colmap_capture(tmp_path / "colmap", num_frames=4))
    nerfstudio = read_nerfstudio(write_capture(tmp_path / "nerfstudio", num_frames=4))
    assert colmap.frame_names == nerfstudio.frame_names
    torch.testing.assert_close(colmap.images, nerfstudio.images, rtol=0, atol=0)
    a, b = colmap.cameras, nerfstudio.cameras
    assert (a.width, a.height) == (b.width, b.height)
    torch.testing.assert_close(a.c2w, b.c2w, rtol=0, atol=1e-4)  # centimetres: 1 um apart at most
    for field in ("fx_px", "fy_px", "cx_px", "cy_px", "distortion"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field))
    assert torch.count_nonzero(a.distortion) == 4 * 4 and len(set(a.fx_px.tolist())) == 4


def test_frames_of_different_sizes_are_refused(tmp_path):
    frames = ring_frames(2, camera_ids=[1, 2])
    cams = {1: ("PINHOLE", [10.0, 10.0, 6.0, 4.0], W, H), 2: ("PINHOLE", [10.0, 10.0, 6.0, 4.0], W + 2, H)}
    write_model(tmp_path / "sparse" / "0", cams, frames)
    write_images(tmp_path / "images", frames, W, H)
    with pytest.raises(SceneFormatError, match="share one size"):
        read_colmap(tmp_path)


def test_colmap_preset_trains_from_a_path(tmp_path):
    """scene=colmap composes with the real-scene defaults and loads the folder it is pointed at."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from lerf.config import register_configs, to_typed
    from tests.helpers import CONF_DIR

    _scene(tmp_path, {1: ("PINHOLE", [10.0, 10.0, 6.0, 4.0], W, H)}, ring_frames(3))
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["scene=colmap", f"scene.path={tmp_path}"])
    cfg = to_typed(OmegaConf.to_container(cfg, resolve=True))
    assert (cfg.scene.kind, cfg.model.name, cfg.encoder.clip) == ("colmap", "nerfacto", "openclip")
    assert len(load_scene(cfg.scene).frame_names) == 3
