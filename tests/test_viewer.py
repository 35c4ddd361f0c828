"""The viewer's pieces without a browser: camera conventions, the overlay, the panel, the backend
(shared with query.py), and view.py's clean shutdown on Ctrl-C."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("viser")

from lerf.data.cameras import camera_rays, image_pixels  # noqa: E402
from lerf.viewer.backend import Backend  # noqa: E402
from lerf.viewer.camera import (c2w_from_viser, pinhole, pose_key, resize, vertical_fov,  # noqa: E402
                                viser_from_c2w)
from lerf.viewer.compose import blend_relevancy, frame_image  # noqa: E402
from lerf.viewer.panel import Actions, Panel, split_prompts  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_identity_viser_pose_looks_along_world_plus_z():
    c2w = c2w_from_viser(np.array([1.0, 0, 0, 0]), np.zeros(3))
    # OpenGL cameras look along their -z axis and have +y up; OpenCV's +z forward, +y down.
    assert np.allclose(-c2w[:, 2], [0, 0, 1]) and np.allclose(c2w[:, 1], [0, -1, 0])


def test_pose_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        position = rng.normal(size=3)
        c2w = c2w_from_viser(q, position)
        wxyz, pos = viser_from_c2w(c2w)
        assert np.allclose(c2w_from_viser(wxyz, pos), c2w, atol=1e-9)
        assert np.allclose(c2w[:, :3] @ c2w[:, :3].T, np.eye(3), atol=1e-9)


def test_pinhole_from_fov_matches_a_dataset_camera(lang_run):
    cams = Backend(lang_run, "cpu").cameras
    v = 1
    fov = vertical_fov(float(cams.fy_px[v]), cams.height)
    mine = pinhole(cams.c2w[v].numpy(), fov, cams.width, cams.height)
    u, vv = image_pixels(cams.width, cams.height)
    ref = camera_rays(cams, torch.full_like(u, v, dtype=torch.long), u, vv)
    got = camera_rays(mine, torch.zeros_like(u, dtype=torch.long), u, vv)
    for a, b in zip(ref, got):
        assert torch.allclose(a, b, atol=1e-5)
    half = resize(cams, v, cams.height // 2)
    assert half.height == cams.height // 2 and torch.allclose(half.fy_px * 2, cams.fy_px[v:v + 1])


def test_pose_key_ignores_float_noise():
    c2w = np.eye(4)[:3]
    assert pose_key(c2w, 0.8, 64, 48) == pose_key(c2w + 1e-8, 0.8 + 1e-9, 64, 48)
    assert pose_key(c2w, 0.8, 64, 48) != pose_key(c2w + 1e-2, 0.8, 64, 48)


def test_overlay_lights_exactly_the_pixels_over_threshold():
    base = torch.full((2, 2, 3), 0.5)
    rel = torch.tensor([[0.2, 0.49], [0.5, 1.0]])
    out = blend_relevancy(base, rel, threshold=0.5, opacity=1.0)
    assert torch.equal(out[0], base[0])  # below the threshold: untouched
    assert not torch.allclose(out[1, 0], base[1, 0]) and not torch.allclose(out[1, 1], base[1, 1])
    faint = blend_relevancy(base, rel, threshold=0.5, opacity=0.25)
    assert (faint[1] - base[1]).abs().sum() < (out[1] - base[1]).abs().sum()  # opacity fades it


def test_split_prompts():
    assert split_prompts("red mug, , blue teapot ") == ["red mug", "blue teapot"]
    assert split_prompts("  ") == []


def test_backend_queries_manual_scale_and_saves_like_query_py(lang_run, tmp_path):
    backend = Backend(lang_run, "cpu", chunk=4096)
    cams = resize(backend.cameras, 0, backend.cameras.height)
    geometry = backend.render(cams, "k", with_language=True)
    auto = backend.query("red mug", cams, "k")
    manual = backend.query("red mug", cams, "k", scale_m=1.01)
    assert torch.equal(auto.maps, manual.maps)  # same cached maps, another scale picked
    assert manual.scale_m == min(backend.scales_m, key=lambda s: abs(s - 1.01))
    image = frame_image(geometry, "depth", auto.relevancy, 0.5, 0.7)
    assert image.shape == (cams.height, cams.width, 3) and image.dtype == np.uint8
    written = backend.save([auto], geometry, out_root=tmp_path)
    stem = written[0].stem
    for suffix in ("_relevancy.npy", "_relevancy.png", "_overlay.png", "_rgb.png", ".json"):
        assert (tmp_path / "red_mug" / f"{stem}{suffix}").is_file()
    assert backend.save([auto], geometry, out_root=tmp_path)[0] != written[0]  # never overwrites


def test_canonical_phrases_change_the_map(lang_run):
    backend = Backend(lang_run, "cpu", chunk=4096)
    cams = resize(backend.cameras, 0, backend.cameras.height)
    geometry = backend.render(cams, "k", with_language=True)
    before = backend.query("red mug", cams, "k").maps
    backend.set_canonical_phrases(["red mug"])  # the query against itself: 0.5 times the visible share
    after = backend.query("red mug", cams, "k").maps
    share = geometry.language.share.reshape(after.shape[1:]).expand_as(after)
    seen = share > 0  # rays with no visible language weight have relevancy 0 (visibility filter)
    assert seen.any() and torch.allclose(after, 0.5 * share, atol=1e-5)
    with pytest.raises(ValueError, match="empty prompt"):
        backend.set_canonical_phrases([" "])


def test_3d_points_are_the_ply_export(lang_run, tmp_path):
    from plyfile import PlyData

    from lerf.data.cameras import project
    from lerf.query.points3d import PLY_THRESHOLD

    import query

    backend = Backend(lang_run, "cpu", chunk=4096)
    found = backend.relevant_points("white plate")
    query.main([f"run={lang_run}", "prompt=white plate", f"out={tmp_path}", "device=cpu", "ply=true"])
    vertex = PlyData.read(str(tmp_path / "white_plate" / "points.ply"))["vertex"]
    scene = backend.loaded.scene
    ply = np.stack([vertex["x"], vertex["y"], vertex["z"]], 1)
    world = scene.to_world(found.points).numpy()
    assert vertex.count == world.shape[0] > 0
    assert np.allclose(ply, world, atol=1e-5)  # the viewer shows what query.py wrote
    # and what query.py wrote is right, checked against its own 2D maps: each point projects onto
    # a pixel centre of a queried view (query.py's default views=eval) where the saved relevancy
    # map holds the point's relevancy, above the 3D threshold
    normalised = (torch.from_numpy(ply) - scene.center_world) * scene.scale_factor
    matched = torch.zeros(len(ply), dtype=torch.bool)
    for v in scene.eval_idx:
        saved = torch.from_numpy(np.load(tmp_path / "white_plate" / f"{Path(scene.frame_names[v]).stem}_relevancy.npy"))
        u, w, z = project(scene.cameras, v, normalised)
        col, row = (u - 0.5).round().long(), (w - 0.5).round().long()
        centred = ((u - 0.5 - col).abs() < 0.05) & ((w - 0.5 - row).abs() < 0.05) & (z > 0)
        inside = centred & (col >= 0) & (col < scene.width) & (row >= 0) & (row < scene.height)
        value = saved[row.clamp(0, scene.height - 1), col.clamp(0, scene.width - 1)]
        matched |= inside & torch.isclose(value, torch.from_numpy(vertex["relevancy"].copy()), atol=1e-6)
    assert matched.all() and (vertex["relevancy"] > PLY_THRESHOLD).all()


@pytest.fixture(scope="module")
def rgb_only_run(tmp_path_factory):
    from lerf.train.trainer import train
    from tests.helpers import tiny_config

    tmp = tmp_path_factory.mktemp("rgb_only")
    train(tiny_config(tmp, "model.language.enabled=false", "trainer.max_steps=2", "trainer.eval_at_end=false"),
          tmp / "run")
    return tmp / "run"


def test_run_without_language_field_renders_and_panel_says_why(rgb_only_run):
    import viser

    backend = Backend(rgb_only_run, "cpu", chunk=4096)
    assert backend.engine is None and "no language field" in backend.language_off_reason
    cams = resize(backend.cameras, 0, backend.cameras.height)
    geometry = backend.render(cams, "k", with_language=True)  # falls back to geometry only
    assert geometry.language is None and torch.isfinite(geometry.depth_m).all()
    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        nothing = Actions(lambda: None, lambda _: None, lambda _: None, lambda: None, lambda: None)
        panel = Panel(server.gui, backend.views(), backend.scales_m, backend.canonical_phrases,
                      backend.language_off_reason, nothing)
        assert panel.prompt.disabled and panel.points.disabled and panel.save.disabled
        assert panel.reason.visible and "prompts are off" in panel.reason.content
        assert not panel.snap.disabled  # views still work
    finally:
        server.stop()


def test_view_py_prints_url_and_stops_cleanly_on_ctrl_c(lang_run):
    def plain_ctrl_c():  # as from a shell: earlier tests may leave SIGINT ignored or blocked, which a child inherits
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([sys.executable, "view.py", f"run={lang_run}", "port=0", "device=cpu"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=plain_ctrl_c)
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("lerf viewer: "):
                url = line.split()[2]
            elif not line and proc.poll() is not None:
                break
        assert url and url.startswith("http://localhost:"), "view.py printed no URL"
        proc.send_signal(signal.SIGINT)
        try:
            # A failure shows what the viewer printed (in 2026-12-04's full-suite runs it printed
            # nothing after the URL: the Ctrl-C never arrived, hence plain_ctrl_c above).
            out, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("view.py did not stop within 90 s of Ctrl-C; it printed:\n" + proc.communicate()[0])
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in out, out
    port = int(url.rsplit(":", 1)[1])
    from tests.test_viewer_browser import port_is_free

    assert port_is_free(port)


def test_view_py_missing_run_is_a_clear_error():
    import view

    with pytest.raises(FileNotFoundError, match="run directory /nonexistent/run not found"):
        view.main(["run=/nonexistent/run"])
    with pytest.raises(SystemExit, match=r"missing required argument\(s\): run=\.\.\."):
        view.main([])
