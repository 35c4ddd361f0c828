"""The public Python API (docs/api.md): lerf.load_run -> query, render, points."""
import pytest
import torch

import lerf
from lerf.model.render_view import render_view


@pytest.fixture(scope="module")
def run(lang_run):
    return lerf.load_run(lang_run, "cpu", chunk=1024)


def test_query_returns_map_scale_and_peak_of_the_exact_path(run):
    cam = run.scene.eval_idx[0]
    result = run.query("red mug", view=cam)
    exact = run.engine().query_exact("red mug", run.scene.cameras, cam)
    assert result.relevancy.shape == (run.scene.height, run.scene.width)
    assert result.scale_idx == exact.scale_idx and result.scale_m == pytest.approx(run.scales_m[exact.scale_idx])
    torch.testing.assert_close(result.maps, exact.maps, atol=1e-5, rtol=0)
    x, y = result.peak()
    assert result.relevancy[y, x] == result.relevancy.max()


def test_a_camera_is_queried_like_the_frame_it_shows(run):
    cam = run.scene.eval_idx[0]
    by_index = run.query("yellow banana", view=cam)
    by_camera = run.query("yellow banana", view=run.scene.cameras.subset([cam]))
    assert torch.equal(by_index.maps, by_camera.maps) and by_index.scale_idx == by_camera.scale_idx
    fixed = run.query("yellow banana", view=cam, scale_m=0.26)
    assert fixed.scale_m == min(run.scales_m, key=lambda s: abs(s - 0.26))
    assert torch.equal(fixed.relevancy, by_index.maps[fixed.scale_idx])


def test_render_is_the_view_renderer(run):
    small = run.scene.cameras.subset([1]).within(24)
    view = run.render(small)
    direct = render_view(run.model, small, 0, 1024)
    assert view.rgb.shape == (small.height, small.width, 3) and view.hidden is None
    assert torch.equal(view.rgb, direct["rgb"]) and torch.equal(view.depth_m, direct["depth_m"])
    assert torch.equal(run.render(small, language=True).rgb, view.rgb)


def test_points_are_in_the_poses_frame_unless_asked(run):
    world = run.points("white plate", views=[0, 1, 2])
    normalised = run.points("white plate", views=[0, 1, 2], world=False)
    assert world.points.shape == normalised.points.shape and world.candidates >= world.points.shape[0]
    torch.testing.assert_close(world.points, run.scene.to_world(normalised.points))


def test_bad_views_are_clear_errors(run):
    frames = len(run.scene.frame_names)
    with pytest.raises(ValueError, match=f"view {frames} is not a frame.*0..{frames - 1}"):
        run.query("red mug", view=frames)
    with pytest.raises(ValueError, match="one camera, got 2"):
        run.render(run.scene.cameras.subset([0, 1]))
    with pytest.raises(ValueError, match="empty prompt"):
        run.query("  ", view=0)
