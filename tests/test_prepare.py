"""prepare.py: photos or a video -> a posed scene (pycolmap SfM), checked against known cameras."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lerf.config import SceneConfig
from lerf.data.scene import load_scene
from lerf.prepare.align import pose_errors, prepared_vs_truth, rotation_angle_deg, umeyama
from lerf.prepare.frames import extract_frames, segments, sharpness
from lerf.prepare.scale import choose_scale, median_step
from lerf.prepare.synthetic import render_capture
from lerf.prepare.write import c2w_opengl, registration_warning, rotation_between

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
VIEWS, SIZE = 12, 256  # SIFT registers all 12 speckled demo views at 256 px (about 10 s on 2 cores)


def _prepare(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "prepare.py"), *args, "threads=2"], cwd=REPO, env=ENV,
                          text=True, capture_output=True, timeout=timeout)


def _one_line_error(done: subprocess.CompletedProcess, *needles: str) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepare")
    truth = render_capture(root / "truth", VIEWS, SIZE, seed=0)
    done = _prepare(f"input={truth / 'images'}", f"out={root / 'scene'}")
    assert done.returncode == 0, done.stderr[-3000:]
    return truth, root / "scene"


# ------------------------------------------------------------------------- the whole command


@pytest.mark.slow
def test_recovered_poses_match_the_truth_after_a_similarity(prepared):
    truth, scene = prepared
    errors, names = prepared_vs_truth(scene, truth)
    assert len(names) == VIEWS
    # Measured about 0.1 deg and 1 mm (docs/prepare.md); a wrong axis convention gives tens of
    # degrees, a wrong frame order tens of centimetres.
    assert np.median(errors.rotation_deg) < 1.0 and errors.rotation_deg.max() < 3.0
    assert np.median(errors.position_m) < 0.01 and errors.position_m.max() < 0.03


@pytest.mark.slow
def test_prepare_json_records_registration_and_the_scale_estimate(prepared):
    _, scene = prepared
    report = json.loads((scene / "prepare.json").read_text())
    assert report["registered"] == report["frames"] == VIEWS and report["warnings"] == []
    assert 0 < report["mean_reprojection_error_px"] < 1.0 and report["mean_track_length"] > 2
    assert report["scale"]["source"] == "estimate" and "ESTIMATE" in report["scale"]["note"]
    meta = json.loads((scene / "transforms.json").read_text())
    c2w = np.asarray([f["transform_matrix"] for f in meta["frames"]])
    # The estimate puts the median step between consecutive frames at step_cm (default 5 cm).
    assert median_step(c2w[:, :3, 3]) == pytest.approx(0.05, rel=1e-6)
    # Upright: the cameras' mean up direction (OpenGL +y) is the world's +z.
    up = c2w[:, :3, 1].mean(0)
    assert up @ [0, 0, 1] / np.linalg.norm(up) > 0.999


@pytest.mark.slow
def test_train_py_loads_the_prepared_scene(prepared):
    _, scene = prepared
    data = load_scene(SceneConfig(name="custom", kind="nerfstudio", path=str(scene), downscale=2))
    meta = json.loads((scene / "transforms.json").read_text())
    assert data.images.shape == (VIEWS, meta["h"] // 2, meta["w"] // 2, 3)  # read from images_2/
    done = subprocess.run([sys.executable, str(REPO / "train.py"), "scene=custom", f"scene.path={scene}",
                           "scene.downscale=2", "model=demo", "model.language.enabled=false", "trainer=smoke",
                           "trainer.max_steps=2", "trainer.eval_at_end=false", "trainer.num_threads=1",
                           f"hydra.run.dir={scene.parent / 'run'}"], cwd=REPO, env=ENV, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "12 frames" in done.stdout + done.stderr


@pytest.mark.slow
def test_an_earlier_output_is_kept_unless_overwrite(prepared, tmp_path):
    truth, scene = prepared
    done = _prepare(f"input={truth / 'images'}", f"out={scene}")
    _one_line_error(done, str(scene), "overwrite=true")
    (tmp_path / "mine.txt").write_text("notes")
    done = _prepare(f"input={truth / 'images'}", f"out={tmp_path}", "overwrite=true")
    _one_line_error(done, "did not write")
    assert (tmp_path / "mine.txt").read_text() == "notes"


# ------------------------------------------------------------------------- bad input, one line each


@pytest.mark.slow
def test_a_folder_without_images(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no photos here")
    _one_line_error(_prepare(f"input={tmp_path / 'in'}", f"out={tmp_path / 'out'}"), "no images found")


@pytest.mark.slow
def test_an_unreadable_image(tmp_path):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.jpg").write_bytes(b"not a jpeg at all")
    _one_line_error(_prepare(f"input={tmp_path / 'in'}", f"out={tmp_path / 'out'}"), "b.jpg", "cannot be read")


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"", b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50], ids=["empty", "corrupt"])
def test_a_video_without_frames(tmp_path, content):
    video = tmp_path / "clip.mp4"
    video.write_bytes(content)
    _one_line_error(_prepare(f"input={video}", f"out={tmp_path / 'out'}"), "clip.mp4", "no video frames")


@pytest.mark.slow
def test_images_that_do_not_register(tmp_path):
    # Independent noise: many SIFT features, no geometry shared between any two images.
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    for k in range(4):
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(tmp_path / "in" / f"{k}.png")
    _one_line_error(_prepare(f"input={tmp_path / 'in'}", f"out={tmp_path / 'out'}"), "SfM registered", "of 4 frames")


def test_a_missing_input_and_a_bad_matcher(tmp_path):
    from prepare import main

    with pytest.raises(ValueError, match="no such file or folder"):
        main([f"input={tmp_path / 'nope'}", f"out={tmp_path / 'out'}"])
    (tmp_path / "in").mkdir()
    with pytest.raises(ValueError, match="matcher=fast"):
        main([f"input={tmp_path / 'in'}", f"out={tmp_path / 'out'}", "matcher=fast"])
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- frames


def test_video_frames_are_evenly_spaced_and_the_sharpest_of_their_window(tmp_path):
    import imageio

    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    blurred = np.full_like(sharp, 128)
    # 16 frames, 2 kept: windows [2, 6) and [10, 14) (lerf.prepare.frames.segments); frames 3 and 12
    # are the only detailed ones.
    frames = [sharp if i in (3, 12) else blurred for i in range(16)]
    with imageio.get_writer(tmp_path / "clip.mp4", fps=8, quality=10, macro_block_size=16) as writer:
        for frame in frames:
            writer.append_data(frame)
    (tmp_path / "frames").mkdir()
    got = extract_frames(tmp_path / "clip.mp4", tmp_path / "frames", budget=2, max_side=32, ext="png")
    assert got.kind == "video" and got.total == 16
    assert got.source == ["video frame 3", "video frame 12"]
    assert Image.open(tmp_path / "frames" / got.names[0]).size == (32, 32)


def test_sharpness_and_windows():
    checker = (np.indices((4, 4)).sum(0) % 2).astype(np.float32)
    assert sharpness(checker) == pytest.approx(16.0) and sharpness(np.ones((5, 5))) == 0.0
    assert segments(16, 2) == [(2, 6), (10, 14)]
    assert segments(3, 10) == [(0, 1), (1, 2), (2, 3)]


# ------------------------------------------------------------------------- math


def test_umeyama_recovers_a_similarity_and_pose_errors_vanish():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(10, 3))
    axis = rng.normal(size=3)
    rot = rotation_between(np.array([1.0, 0, 0]), axis)
    dst = 0.3 * src @ rot.T + [1.0, -2.0, 0.5]
    sim = umeyama(src, dst)
    assert sim.scale == pytest.approx(0.3) and np.allclose(sim.rotation, rot) and np.allclose(sim.apply(src), dst)
    c2w = np.tile(np.eye(4), (10, 1, 1))
    c2w[:, :3, 3] = src
    ref = c2w.copy()
    ref[:, :3, :3] = rot
    ref[:, :3, 3] = dst
    errors = pose_errors(c2w, ref)
    assert errors.rotation_deg.max() < 1e-4 and errors.position_m.max() < 1e-9


def test_colmap_pose_to_opengl_c2w():
    # COLMAP: world origin 2 units in front of the camera (OpenCV axes, looking down +z).
    c2w = c2w_opengl(np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2]]))
    assert np.allclose(c2w[:3, 3], [0, 0, -2])
    assert np.allclose(-c2w[:3, 2], [0, 0, 1])  # OpenGL looks down its -z: towards the origin
    assert np.allclose(c2w[:3, 1], [0, -1, 0])  # OpenCV's y is down, so OpenGL's up is -y
    assert rotation_angle_deg(rotation_between(np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))[None])[0] == \
        pytest.approx(90)


def test_scale_given_or_estimated():
    positions = np.array([[0.0, 0, 0], [2, 0, 0], [6, 0, 0], [8, 0, 0]])  # steps 2, 4, 2
    assert choose_scale(positions, 0.5, 5.0).metres_per_unit == 0.5
    estimate = choose_scale(positions, None, 10.0)
    assert estimate.source == "estimate" and estimate.metres_per_unit == pytest.approx(0.1 / 2)
    with pytest.raises(ValueError, match="metres_per_unit"):
        choose_scale(positions, -1.0, 5.0)
    with pytest.raises(ValueError, match="do not move"):
        choose_scale(np.zeros((3, 3)), None, 5.0)


def test_a_warning_below_80_percent_registered_says_what_to_try():
    assert registration_warning(8, 10, "video") is None
    warning = registration_warning(7, 10, "video")
    assert "7 of 10" in warning and "frames=" in warning and "matcher=exhaustive" in warning
    assert "overlap" in registration_warning(1, 10, "photos")
