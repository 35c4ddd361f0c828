import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from lerf.data.cameras import Cameras, camera_rays, distort, undistort
from lerf.data.nerfstudio import SceneFormatError, read_nerfstudio
from lerf.data.scene import focus_point, normalise_cameras, split_indices


def _camera(c2w=None, dist=None) -> Cameras:
    c2w = torch.eye(4)[:3][None] if c2w is None else c2w
    return Cameras(c2w=c2w, fx_px=torch.tensor([100.0]), fy_px=torch.tensor([100.0]), cx_px=torch.tensor([50.0]),
                   cy_px=torch.tensor([50.0]), width=100, height=100,
                   distortion=torch.zeros(1, 4) if dist is None else dist)


def test_rays_hand_computed():
    cams = _camera()
    idx = torch.zeros(3, dtype=torch.long)
    o, d, z = camera_rays(cams, idx, torch.tensor([50.0, 150.0, 50.0]), torch.tensor([50.0, 50.0, 0.0]))
    assert torch.allclose(o, torch.zeros(3, 3))
    assert torch.allclose(d[0], torch.tensor([0.0, 0.0, -1.0]))
    assert torch.allclose(d[1], torch.tensor([1.0, 0.0, -1.0]) / math.sqrt(2))
    # v = 0 is the top row: OpenGL +y is up
    assert torch.allclose(d[2], torch.tensor([0.0, 0.5, -1.0]) / math.sqrt(1.25))
    assert torch.allclose(z[1], torch.tensor(1 / math.sqrt(2)))


def test_resized_camera_sees_the_same_rays():
    # the image centre and corner pixel of a 2x smaller image look along the same directions
    small = _camera().resized(50, 25)
    assert (small.width, small.height) == (50, 25)
    idx = torch.zeros(2, dtype=torch.long)
    _, d_big, _ = camera_rays(_camera(), idx, torch.tensor([50.0, 0.0]), torch.tensor([50.0, 0.0]))
    _, d_small, _ = camera_rays(small, idx, torch.tensor([25.0, 0.0]), torch.tensor([12.5, 0.0]))
    assert torch.allclose(d_big, d_small, atol=1e-6)


def test_rays_rotated_and_translated():
    # camera at (1, 2, 3) rotated 90 degrees about +y: its -z axis points to world -x
    rot = torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    c2w = torch.cat([rot, torch.tensor([[1.0], [2.0], [3.0]])], 1)[None]
    o, d, _ = camera_rays(_camera(c2w), torch.zeros(1, dtype=torch.long), torch.tensor([50.0]), torch.tensor([50.0]))
    assert torch.allclose(o[0], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(d[0], torch.tensor([-1.0, 0.0, 0.0]), atol=1e-6)


def test_undistort_inverts_distort():
    k = torch.tensor([0.1, -0.05, 0.01, -0.02])
    x, y = torch.rand(50) - 0.5, torch.rand(50) - 0.5
    xd, yd = distort(x, y, k)
    xu, yu = undistort(xd, yd, k)
    assert torch.allclose(xu, x, atol=1e-5) and torch.allclose(yu, y, atol=1e-5)
    # distortion actually bends the ray
    cams = _camera(dist=k[None])
    _, d_dist, _ = camera_rays(cams, torch.zeros(1, dtype=torch.long), torch.tensor([90.0]), torch.tensor([90.0]))
    _, d_pin, _ = camera_rays(_camera(), torch.zeros(1, dtype=torch.long), torch.tensor([90.0]), torch.tensor([90.0]))
    assert not torch.allclose(d_dist, d_pin)


def test_split_every_8th():
    train, ev = split_indices(10, 8)
    assert ev == [0, 8] and train == [1, 2, 3, 4, 5, 6, 7, 9]


def test_normalise_keeps_scale():
    c2w = torch.eye(4)[:3][None].repeat(2, 1, 1)
    c2w[0, :, 3] = torch.tensor([4.0, 0, 0])
    c2w[1, :, 3] = torch.tensor([-4.0, 2, 0])
    cams = _camera()
    cams = Cameras(c2w, cams.fx_px.repeat(2), cams.fy_px.repeat(2), cams.cx_px.repeat(2), cams.cy_px.repeat(2), 100,
                   100, torch.zeros(2, 4))
    out, center, scale = normalise_cameras(cams, "poses")
    assert out.c2w[:, :, 3].abs().max() == pytest.approx(1.0)
    assert scale == pytest.approx(0.25)
    # world distances come back by dividing by the scale factor
    dist_norm = (out.c2w[0, :, 3] - out.c2w[1, :, 3]).norm() / scale
    assert dist_norm == pytest.approx((c2w[0, :, 3] - c2w[1, :, 3]).norm().item())


def test_focus_point():
    # two cameras looking at (0, 0, 0) from +x and +y
    look_x = torch.tensor([[0.0, 0, 1, 5], [0, 1, 0, 0], [-1, 0, 0, 0]])  # -z axis -> -x
    look_y = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 5], [0, -1, 0, 0]])  # -z axis -> -y
    assert torch.allclose(focus_point(torch.stack([look_x, look_y])), torch.zeros(3), atol=1e-5)


def _write_scene(root, frames=None, meta=None, size=(8, 6)):
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    w, h = size
    base = {"fl_x": 10.0, "fl_y": 10.0, "cx": w / 2, "cy": h / 2, "w": w, "h": h, "camera_model": "PINHOLE"}
    if meta:
        base.update(meta)
    if frames is None:
        frames = []
        for i in range(3):
            iio.imwrite(root / "images" / f"f{i}.png", np.full((h, w, 3), 40 * i, np.uint8))
            pose = np.eye(4)
            pose[0, 3] = i
            frames.append({"file_path": f"images/f{i}.png", "transform_matrix": pose.tolist()})
    base["frames"] = frames
    (root / "transforms.json").write_text(json.dumps(base))
    return root


def test_read_nerfstudio_ok(tmp_path):
    root = _write_scene(tmp_path / "s")
    scene = read_nerfstudio(root)
    assert scene.images.shape == (3, 6, 8, 3) and scene.images.dtype == torch.uint8
    assert scene.cameras.c2w.shape == (3, 3, 4) and scene.cameras.fx_px[0] == 10.0


def test_per_frame_intrinsics_and_opencv(tmp_path):
    root = _write_scene(tmp_path / "s", meta={"camera_model": "OPENCV", "k1": 0.1})
    data = json.loads((root / "transforms.json").read_text())
    data["frames"][1]["fl_x"] = 20.0
    (root / "transforms.json").write_text(json.dumps(data))
    scene = read_nerfstudio(root)
    assert scene.cameras.fx_px.tolist() == [10.0, 20.0, 10.0]
    assert scene.cameras.distortion[0, 0] == pytest.approx(0.1)


def test_downscale_resizes_or_uses_folder(tmp_path):
    root = _write_scene(tmp_path / "s")
    scene = read_nerfstudio(root, downscale=2)
    assert scene.images.shape[1:3] == (3, 4) and scene.cameras.fx_px[0] == 5.0
    (root / "images_2").mkdir()
    for i in range(3):
        iio.imwrite(root / "images_2" / f"f{i}.png", np.full((3, 4, 3), 200, np.uint8))
    assert int(read_nerfstudio(root, downscale=2).images[0, 0, 0, 0]) == 200


@pytest.mark.parametrize("mutate, message", [
    (lambda d, r: d.update(frames=[]), "'frames' is missing or empty"),
    (lambda d, r: d.update(camera_model="FISHEYE"), "unknown camera_model 'FISHEYE'"),
    (lambda d, r: d["frames"][1].update(file_path="images/missing.png"), "missing.png not found"),
    (lambda d, r: d["frames"][2]["transform_matrix"][0].__setitem__(3, float("nan")), "non-finite"),
    (lambda d, r: d.update(w=9), "expected 9x6"),
    (lambda d, r: d.pop("fl_x"), "no 'fl_x'"),
])
def test_bad_input_errors(tmp_path, mutate, message):
    root = _write_scene(tmp_path / "s")
    data = json.loads((root / "transforms.json").read_text())
    mutate(data, root)
    (root / "transforms.json").write_text(json.dumps(data))
    with pytest.raises(SceneFormatError, match=message) as err:
        read_nerfstudio(root)
    assert "transforms.json" in str(err.value)


def test_missing_scene_dir_and_file(tmp_path):
    with pytest.raises(SceneFormatError, match="not found"):
        read_nerfstudio(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SceneFormatError, match="transforms.json"):
        read_nerfstudio(tmp_path / "empty")
