"""Hand-computed cases for the 3D query's geometry (projection in lerf/data/cameras.py, view
counts in lerf/model/visibility.py) and the query video's camera path
(lerf/query/camera_path.py): a known camera, known points, numbers worked out on paper.

The camera convention is nerfstudio's (lerf/data/cameras.py): the camera looks down its -z axis,
+y up; pixel (row i, col j) has its centre at (u, v) = (j + 0.5, i + 0.5); a point at camera
coordinates (x, y, -z) lands at u = fx·x/z + cx, v = -fy·y/z + cy.
"""
from __future__ import annotations

import math

import pytest
import torch

from lerf.data.cameras import Cameras, backproject, project
from lerf.model.visibility import visibility_counts
from lerf.query.camera_path import interpolate_path


def rot_y(deg: float) -> torch.Tensor:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(deg: float) -> torch.Tensor:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def cameras(poses: list[tuple[torch.Tensor, list[float]]], f: float = 10.0, size: int = 4) -> Cameras:
    """Pinhole cameras of `size` x `size` pixels, focal `f` px, principal point at the centre."""
    c2w = torch.stack([torch.cat([r, torch.tensor(t)[:, None]], 1) for r, t in poses])
    n = len(poses)
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return Cameras(c2w, full(f), full(f), full(size / 2), full(size / 2), size, size, torch.zeros(n, 4))


IDENTITY = (torch.eye(3), [0.0, 0.0, 0.0])
# At (1, 0, 0), turned 90° about +y: its -z axis (the viewing direction) is world -x.
TURNED = (rot_y(90), [1.0, 0.0, 0.0])


def test_project_known_points():
    cams = cameras([IDENTITY, TURNED])
    points = torch.tensor([[0.0, 0.0, -2.0], [0.2, 0.1, -2.0], [-1.0, 0.0, 0.0], [-1.0, 0.2, 0.4]])
    u, v, z = project(cams, 0, points)
    # (0, 0, -2): on the axis, 2 in front -> the principal point (2, 2)
    # (0.2, 0.1, -2): u = 10·0.2/2 + 2 = 3, v = -10·0.1/2 + 2 = 1.5
    assert torch.allclose(u[:2], torch.tensor([2.0, 3.0])) and torch.allclose(v[:2], torch.tensor([2.0, 1.5]))
    assert torch.allclose(z[:2], torch.tensor([2.0, 2.0]))
    assert z[2] == 0  # (-1, 0, 0) lies in the camera's plane z = 0
    u, v, z = project(cams, 1, points)
    # The turned camera: p_cam = R^T (p - t). (-1, 0, 0) -> (0, 0, -2): 2 in front, centre.
    # (-1, 0.2, 0.4) -> p - t = (-2, 0.2, 0.4) -> p_cam = (-0.4, 0.2, -2) -> u = 10·(-0.4)/2 + 2 = 0,
    # v = -10·0.2/2 + 2 = 1.
    assert torch.allclose(u[2:], torch.tensor([2.0, 0.0]), atol=1e-6)
    assert torch.allclose(v[2:], torch.tensor([2.0, 1.0]), atol=1e-6)
    assert torch.allclose(z[2:], torch.tensor([2.0, 2.0]), atol=1e-6)
    # (2, 0, 0) is 1 m behind it: p - t = (1, 0, 0) -> p_cam = (0, 0, 1) -> z = -1
    assert torch.allclose(project(cams, 1, torch.tensor([[2.0, 0.0, 0.0]]))[2], torch.tensor([-1.0]), atol=1e-6)


def test_backproject_known_depth():
    cams = cameras([IDENTITY, TURNED])
    depth_m = torch.full((4, 4), 2.0)  # camera-z depth 2 m at every pixel
    pts = backproject(cams, 0, depth_m, scale_factor=1.0).reshape(4, 4, 3)
    # pixel (row 1, col 2): centre (2.5, 1.5) -> x = (2.5 - 2)/10 = 0.05, y = -(1.5 - 2)/10 = 0.05,
    # at z = 2: (0.1, 0.1, -2)
    assert torch.allclose(pts[1, 2], torch.tensor([0.1, 0.1, -2.0]), atol=1e-6)
    # pixel (3, 0): centre (0.5, 3.5) -> x = -0.15, y = -0.15 -> (-0.3, -0.3, -2)
    assert torch.allclose(pts[3, 0], torch.tensor([-0.3, -0.3, -2.0]), atol=1e-6)
    # every point has camera-z 2 (depth is along the axis, not along the ray)
    assert torch.allclose(pts[..., 2], torch.full((4, 4), -2.0), atol=1e-6)
    # scale_factor 0.5 normalised units per metre: half as far, same directions
    half = backproject(cams, 0, depth_m, scale_factor=0.5).reshape(4, 4, 3)
    assert torch.allclose(half, pts * 0.5, atol=1e-6)
    # the turned camera: pixel (row 1, col 2) at camera-z 2 is p_cam = (0.1, 0.1, -2);
    # world = R p_cam + t = (-2 + 1, 0.1, -0.1)
    turned = backproject(cams, 1, depth_m, scale_factor=1.0).reshape(4, 4, 3)
    assert torch.allclose(turned[1, 2], torch.tensor([-1.0, 0.1, -0.1]), atol=1e-6)


def test_backproject_then_project_is_the_pixel_centre():
    cams = cameras([TURNED])
    depth_m = torch.linspace(1.0, 3.0, 16).reshape(4, 4)
    u, v, z = project(cams, 0, backproject(cams, 0, depth_m, scale_factor=1.0))
    cols, rows = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="xy")
    assert torch.allclose(u, cols.reshape(-1) + 0.5, atol=1e-5)
    assert torch.allclose(v, rows.reshape(-1) + 0.5, atol=1e-5)
    assert torch.allclose(z, depth_m.reshape(-1), atol=1e-5)


def test_visibility_counts_known_points():
    # View 0 sees a wall 2 m away; view 1, the same pose, a wall at 0.5 m. rel_tol 3 %.
    cams = cameras([IDENTITY, IDENTITY])
    depth_m = torch.stack([torch.full((4, 4), 2.0), torch.full((4, 4), 0.5)])
    points = torch.tensor([
        [0.0, 0.0, -0.4],   # before both walls: seen by both
        [0.0, 0.0, -1.0],   # before the 2 m wall, behind the 0.5 m one: seen by view 0 only
        [0.0, 0.0, -2.05],  # 2.5 % behind the 2 m wall, within 3 %: view 0 only
        [0.0, 0.0, -2.1],   # 5 % behind it: hidden from both
        [0.0, 0.0, 1.0],    # behind the cameras
        [3.0, 0.0, -1.0],   # u = 10·3/1 + 2 = 32: outside the 4-pixel image
    ])
    counts = visibility_counts(points, cams, [0, 1], depth_m, scale_factor=1.0, rel_tol=0.03)
    assert counts.tolist() == [2, 1, 1, 0, 0, 0]
    # slack (normalised units, here metres: scale 1) lets a point 0.2 behind the 2 m wall count
    slack = visibility_counts(points[3:4], cams, [0], depth_m[:1], scale_factor=1.0, rel_tol=0.0, slack=0.2)
    assert slack.tolist() == [1]
    # in world units: with scale_factor 0.5 the same normalised points are twice as far (in metres)
    far = visibility_counts(points[:1], cams, [0], depth_m[:1], scale_factor=0.5, rel_tol=0.0)
    assert far.tolist() == [1]  # 0.4 normalised = 0.8 m, before the 2 m wall
    far = visibility_counts(torch.tensor([[0.0, 0.0, -1.2]]), cams, [0], depth_m[:1], scale_factor=0.5,
                            rel_tol=0.0)
    assert far.tolist() == [0]  # 1.2 normalised = 2.4 m, behind it


def test_interpolate_path_midpoints_by_hand():
    # Key A: identity at the origin. Key B: turned 90° about +z, at (2, 0, 0).
    cams = cameras([IDENTITY, (rot_z(90), [2.0, 0.0, 0.0])], f=7.0)
    path = interpolate_path(cams, [0, 1], frames=4)  # A, A->B half way, B, B->A half way
    assert len(path) == 4 and (path.width, path.height) == (4, 4)
    assert torch.allclose(path.c2w[0], cams.c2w[0]) and torch.allclose(path.c2w[2], cams.c2w[1], atol=1e-6)
    # half way: position (1, 0, 0); rotation: the blend (I + Rz(90))/2, made a rotation again, is Rz(45)
    for mid in (1, 3):
        assert torch.allclose(path.c2w[mid, :, 3], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
        assert torch.allclose(path.c2w[mid, :, :3], rot_z(45), atol=1e-6)
    assert torch.allclose(path.fx_px, torch.full((4,), 7.0))  # intrinsics of keys[0]
    with pytest.raises(ValueError, match="at least 2 key cameras, got 1"):
        interpolate_path(cams, [0], frames=4)
