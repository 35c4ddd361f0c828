"""Real-capture features: per-image appearance embedding, camera pose refinement, the noisy demo
variant (scene.capture_noise) and training on every frame (scene.eval_every=0)."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from lerf.config import ModelConfig, OptimConfig
from lerf.data.cameras import Cameras, camera_rays, image_pixels
from lerf.data.pose_refinement import (PoseRefinement, compose, mean_correction, pin_gauge, rotation_angle_deg, so3_exp,
                                       so3xr3_exp)
from lerf.fields.appearance import AppearanceEmbedding
from lerf.model import LerfModel, SceneGeometry
from lerf.model.checkpoint import load_checkpoint
from lerf.model.render_view import render_view
from lerf.train.optim import build_optimizer
from tests.helpers import tiny_config


# --------------------------------------------------------------------------- appearance


def test_appearance_rows_and_eval_choice():
    emb = AppearanceEmbedding(train_frames=[1, 2, 3], num_frames=4, dim=5, eval_choice="mean")
    table = emb.embedding.weight
    out = emb(torch.tensor([2, 0, 3]), 3)
    assert torch.equal(out[0], table[1]) and torch.equal(out[2], table[2])
    assert torch.allclose(out[1], table.mean(0))  # frame 0 is held out: the mean
    assert torch.allclose(emb(None, 2), table.mean(0).expand(2, -1))
    zeros = AppearanceEmbedding([1, 2, 3], 4, 5, eval_choice="zeros")
    assert torch.equal(zeros(torch.tensor([0]), 1), torch.zeros(1, 5))
    with pytest.raises(ValueError, match="mean\\|zeros"):
        AppearanceEmbedding([1], 2, 5, eval_choice="median")


def _tiny_model(appearance_eval: str = "mean", clip_dim: int = 0) -> LerfModel:
    cfg = ModelConfig(appearance_dim=4, appearance_eval=appearance_eval, pose_refinement=False,
                      proposal_samples=[16], nerf_samples=8)
    cfg.grid.log2_hashmap_size, cfg.grid.num_levels, cfg.grid.max_resolution = 12, 4, 64
    cfg.proposals = cfg.proposals[:1]
    geometry = SceneGeometry(True, 1.0, 0.05, 10.0, 1.0, None, num_frames=3, train_frames=[1, 2])
    cfg.language.grids[0].log2_hashmap_size, cfg.language.grids[0].num_levels = 12, 4
    return LerfModel(cfg, geometry, "torch", clip_dim=clip_dim).eval()


def _camera() -> Cameras:
    c2w = torch.eye(4)[:3].clone()
    c2w[2, 3] = 2.0  # at z = 2 looking down -z at the origin
    one = torch.ones(1)
    return Cameras(c2w[None], 8 * one, 8 * one, 4 * one, 4 * one, 8, 8, torch.zeros(1, 4))


def _render_frame(model: LerfModel, frame: int) -> torch.Tensor:
    u, v = image_pixels(8, 8)
    origins, dirs, _ = camera_rays(_camera(), torch.zeros_like(u, dtype=torch.long), u, v)
    with torch.no_grad():
        return model(origins, dirs, frame_idx=torch.full_like(u, frame, dtype=torch.long))["rgb"]


@pytest.mark.parametrize("choice", ["mean", "zeros"])
def test_rendered_views_use_the_documented_appearance(choice):
    """render_view (eval, query, viewer) renders with the eval choice, whatever the camera."""
    model = _tiny_model(choice)
    table = model.appearance.embedding.weight
    with torch.no_grad():
        table.copy_(torch.tensor([[3.0, -2.0, 1.0, 0.5], [1.0, 0.0, 1.0, 2.5]]))
    eval_vector = table.mean(0) if choice == "mean" else torch.zeros(4)
    rendered = render_view(model, _camera(), 0)["rgb"].reshape(-1, 3)
    with torch.no_grad():
        table.copy_(eval_vector.expand(2, -1))  # a training frame now carries exactly the eval vector
    assert torch.allclose(rendered, _render_frame(model, 1), atol=1e-6)


def test_appearance_changes_colour_only():
    """Two frames with very different vectors: different colour, the same density, depth and
    rendered language embedding (meaning must not depend on exposure)."""
    model = _tiny_model(clip_dim=8)
    with torch.no_grad():
        model.appearance.embedding.weight.copy_(torch.tensor([[4.0, 0, 0, 0], [-4.0, 0, 0, 0]]))
    u, v = image_pixels(8, 8)
    origins, dirs, _ = camera_rays(_camera(), torch.zeros_like(u, dtype=torch.long), u, v)
    scale = torch.full((u.shape[0], 4), 0.3)  # each language sample's scale
    with torch.no_grad():
        a = model(origins, dirs, frame_idx=torch.ones_like(u, dtype=torch.long))
        b = model(origins, dirs, frame_idx=torch.full_like(u, 2, dtype=torch.long))
        lang_a = model.render_language(*model.language_samples(a, 4)[:2], scale)["clip"]
        lang_b = model.render_language(*model.language_samples(b, 4)[:2], scale)["clip"]
    assert not torch.allclose(a["rgb"], b["rgb"])
    assert torch.equal(a["weights"], b["weights"]) and torch.equal(a["depth"], b["depth"])
    assert torch.equal(lang_a, lang_b)


# --------------------------------------------------------------------------- pose refinement


def test_so3_exp_worked_example_and_identity():
    r = so3_exp(torch.tensor([[0.0, 0.0, math.pi / 2]]))[0]
    assert torch.allclose(r, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), atol=1e-6)
    assert torch.equal(so3xr3_exp(torch.zeros(2, 6)), torch.eye(4)[:3].expand(2, -1, -1))
    omega = torch.randn(5, 3) * 0.3
    rot = so3_exp(omega)
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3).expand(5, -1, -1), atol=1e-5)
    assert torch.allclose(rotation_angle_deg(rot), torch.rad2deg(omega.norm(dim=-1)), atol=1e-2)


def test_held_out_frames_keep_their_pose_exactly():
    refine = PoseRefinement(train_frames=[1, 2], num_frames=3)
    with torch.no_grad():
        refine.delta.normal_(0, 0.1)
    c2w = torch.randn(3, 3, 4)
    out = refine(c2w)
    assert torch.equal(out[0], c2w[0]) and not torch.allclose(out[1:], c2w[1:])
    out.sum().backward()
    assert refine.delta.grad is not None and refine.delta.grad.abs().sum() > 0


def test_pinned_gauge_cancels_a_common_motion_and_keeps_per_frame_ones():
    """Corrections = one shared rigid motion G (0.4 deg, 2 cm) + per-frame zero-mean parts:
    pinning removes G and keeps the per-frame parts (the mean centre stays put)."""
    gen = torch.Generator().manual_seed(0)
    n = 12
    given = compose(so3xr3_exp(torch.randn(n, 6, generator=gen) * 0.5), torch.eye(4)[:3].expand(n, -1, -1))
    common = so3xr3_exp(torch.tensor([[0.02, -0.01, 0.01, 0.004, 0.005, -0.003]]))[0]
    world_g = lambda c2w: torch.cat([common[:, :3] @ c2w[:, :, :3], (c2w[:, :, 3] @ common[:, :3].T  # noqa: E731
                                                                      + common[:, 3])[:, :, None]], -1)
    assert torch.allclose(pin_gauge(given, world_g(given)), given, atol=2e-5)
    own = so3xr3_exp(torch.randn(n, 6, generator=gen) * 0.005)
    own_only = compose(given, own)
    pinned = pin_gauge(given, world_g(own_only))
    torch.testing.assert_close(pinned[:, :, 3].mean(0), given[:, :, 3].mean(0), atol=1e-5, rtol=0)
    # What is left is close to the per-frame parts alone (their own small mean is removed too).
    assert (pinned - pin_gauge(given, own_only)).abs().max() < 1e-4
    refine = PoseRefinement(train_frames=list(range(n)), num_frames=n)
    with torch.no_grad():
        refine.delta[:] = torch.tensor([0.01, 0.0, 0.0, 0.0, 0.0, 0.0])  # every camera 1 cm along its own x
    assert not torch.allclose(compose(given, so3xr3_exp(refine.delta)), given, atol=1e-3)
    torch.testing.assert_close(refine(given)[:, :, 3].mean(0), given[:, :, 3].mean(0), atol=1e-6, rtol=0)


def test_mean_correction_reads_small_rotations():
    refine = PoseRefinement(train_frames=[0, 1], num_frames=3, pin_gauge=False)
    with torch.no_grad():
        refine.delta[:] = torch.tensor([0.0, 0.002, 0.0, 1e-4, 0.0, 0.0])  # 2 mm, 1e-4 rad about x
    rot_deg, shift = mean_correction(refine, torch.eye(4)[:3].expand(3, -1, -1).clone())
    assert rot_deg == pytest.approx(math.degrees(1e-4), rel=1e-3) and shift == pytest.approx(0.002, rel=1e-4)


def _plane_colour(origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """A differentiable textured ground plane z = 0: the colour where each ray meets it."""
    t = -origins[:, 2] / dirs[:, 2]
    p = origins + t[:, None] * dirs
    return torch.stack([torch.sin(6 * p[:, 0]), torch.cos(5 * p[:, 1]), torch.sin(4 * (p[:, 0] + p[:, 1]))], -1)


def _two_views() -> Cameras:
    c2w = torch.eye(4)[:3].expand(2, -1, -1).clone()
    c2w[:, 2, 3] = 1.5
    c2w[1, 0, 3] = 0.3
    ones = torch.ones(2)
    return Cameras(c2w, 24 * ones, 24 * ones, 16 * ones, 16 * ones, 32, 32, torch.zeros(2, 4))


def test_pose_refinement_recovers_a_perturbed_pose():
    """Two views of a known scene; view 1's pose is off by 1.5 deg and 3 cm. Training only the
    corrections (with optim.camera's own settings, lr 6e-4 x 10 here to keep the test short) on
    the photometric loss brings it back towards the truth; held-out view 0 never moves."""
    truth = _two_views()
    u, v = image_pixels(32, 32)
    idx = torch.ones_like(u, dtype=torch.long)
    target = _plane_colour(*camera_rays(truth, idx, u, v)[:2])
    noise = so3xr3_exp(torch.tensor([[0.03, -0.02, 0.0, 0.015, -0.02, 0.01]]))
    given = Cameras(truth.c2w.clone(), truth.fx_px, truth.fy_px, truth.cx_px, truth.cy_px, 32, 32, truth.distortion)
    given.c2w[1] = compose(truth.c2w[1:], noise)[0]
    holder = nn.Module()
    holder.pose_refinement = PoseRefinement(train_frames=[1], num_frames=2, pin_gauge=False)  # one frame: no gauge
    optim_cfg = OptimConfig()
    optim_cfg.camera.lr *= 10
    optim_cfg.camera.warmup_steps = 0  # the scene is known from step 0 here
    optimizer, _ = build_optimizer(holder, optim_cfg)
    assert optimizer.param_groups[0]["weight_decay"] == 1e-2 and optimizer.param_groups[0]["eps"] == 1e-8

    def error(c2w):
        rot = rotation_angle_deg(c2w[1:, :, :3].transpose(1, 2) @ truth.c2w[1:, :, :3])[0]
        return float(rot), float((c2w[1, :, 3] - truth.c2w[1, :, 3]).norm())

    rot0, trans0 = error(given.c2w)
    for _ in range(150):
        cams = Cameras(holder.pose_refinement(given.c2w), truth.fx_px, truth.fy_px, truth.cx_px, truth.cy_px, 32,
                       32, truth.distortion)
        loss = ((_plane_colour(*camera_rays(cams, idx, u, v)[:2]) - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    refined = holder.pose_refinement(given.c2w).detach()
    rot1, trans1 = error(refined)
    assert rot1 < 0.25 * rot0 and trans1 < 0.25 * trans0, (rot0, rot1, trans0, trans1)
    assert torch.equal(refined[0], given.c2w[0])


def test_camera_lr_warms_up_then_decays():
    from lerf.train.optim import lr_factor

    holder = nn.Module()
    holder.field = nn.Linear(2, 2)
    holder.pose_refinement = PoseRefinement(train_frames=[0], num_frames=1)
    optimizer, scheduler = build_optimizer(holder, OptimConfig())
    assert [g["lr"] for g in optimizer.param_groups] == [1e-2, 0.0]  # the cameras wait for the field
    for _ in range(250):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[1]["lr"] == pytest.approx(6e-4 * 0.5 * 0.01 ** (250 / 200000))
    assert lr_factor(250, 1e-2, 1e-3, 5000, 500) == pytest.approx(0.5 * 10 ** -0.05)


# --------------------------------------------------------------------------- noisy demo + training


@pytest.fixture(scope="module")
def noisy_scenes(tmp_path_factory):
    from lerf.data.scene import load_scene
    from lerf.config import to_typed

    tmp = tmp_path_factory.mktemp("noisy")
    clean = load_scene(to_typed(tiny_config(tmp)).scene)
    noisy = load_scene(to_typed(tiny_config(tmp, "scene.capture_noise=true")).scene)
    return clean, noisy


def test_capture_noise_jitters_training_frames_only(noisy_scenes):
    clean, noisy = noisy_scenes
    assert noisy.root != clean.root and noisy.eval_idx == clean.eval_idx == [0, 4]
    meta = json.loads((noisy.root / "transforms.json").read_text())
    backdrop = noisy.object_ids == 0  # the constant background colour is never jittered
    for k, frame in enumerate(meta["frames"]):
        same_image = torch.equal(noisy.images[k], clean.images[k])
        if k in noisy.eval_idx:
            assert same_image and "capture_noise" not in frame
            continue
        assert not same_image and torch.equal(noisy.images[k][backdrop[k]], clean.images[k][backdrop[k]])
        true_c2w = np.asarray(frame["capture_noise"]["true_transform_matrix"])
        c2w = np.asarray(frame["transform_matrix"])
        cos = (np.trace(c2w[:3, :3].T @ true_c2w[:3, :3]) - 1) / 2
        assert math.degrees(math.acos(min(cos, 1.0))) == pytest.approx(0.5, abs=1e-4)
        assert np.linalg.norm(c2w[:3, 3] - true_c2w[:3, 3]) == pytest.approx(0.01, abs=1e-6)
        ratio = noisy.images[k].float().mean() / clean.images[k].float().mean()
        assert 0.7 < ratio < 1.35
    from lerf.evaluation.poses import pose_errors

    errors = pose_errors(noisy)  # the given (noisy) poses against the recorded truth
    assert errors["rotation_deg"] == pytest.approx(0.5, abs=1e-3) and errors["num_frames"] == 6
    assert errors["translation_m"] == pytest.approx(0.01, abs=1e-5) and pose_errors(clean) is None


def test_noisy_demo_turns_on_appearance_and_pose_refinement(tmp_path):
    from lerf.config import to_typed

    assert not to_typed(tiny_config(tmp_path)).model.pose_refinement
    cfg = to_typed(tiny_config(tmp_path, "scene.capture_noise=true"))
    assert cfg.model.appearance and cfg.model.pose_refinement
    real = to_typed(tiny_config(tmp_path, "scene=teacup", "scene.path=/x"))
    assert real.model.appearance and real.model.pose_refinement and real.model.appearance_dim == 32


def test_noisy_run_saves_refined_poses_that_query_uses(tmp_path):
    from lerf.query.run import load_run
    from lerf.train.trainer import train

    cfg = tiny_config(tmp_path, "scene.capture_noise=true", "model.language.enabled=false", "trainer.max_steps=20",
                      "trainer.eval_at_end=false")
    train(cfg, tmp_path / "run")
    state = load_checkpoint(tmp_path / "run")
    loaded = load_run(tmp_path / "run", "cpu")
    from lerf.data.scene import load_scene

    disk = load_scene(loaded.cfg.scene, generate=False).cameras.c2w
    assert torch.equal(state.c2w, loaded.scene.cameras.c2w)
    held_out, trained = loaded.scene.eval_idx, loaded.scene.train_idx
    assert torch.equal(state.c2w[held_out], disk[held_out])
    assert not torch.allclose(state.c2w[trained], disk[trained])  # 20 steps at lr 6e-4 moved them
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    ea.Reload()
    assert ea.Scalars("camera/rotation_deg")[-1].value > 0


def test_eval_every_zero_trains_on_every_frame(tmp_path):
    import query
    from lerf.evaluation.after_training import evaluate_trained
    from lerf.evaluation.progress import progress_pictures
    from lerf.query.run import load_run
    from lerf.train.trainer import train

    cfg = tiny_config(tmp_path, "scene.eval_every=0", "scene.capture_noise=true", "trainer.max_steps=10",
                      "trainer.image_every=5")
    # The entry point's hooks: with no held-out view neither pictures nor evaluation may run.
    summary = train(cfg, tmp_path / "run", evaluate=evaluate_trained, pictures=progress_pictures)
    assert "psnr" not in summary and not (tmp_path / "run" / "eval.json").exists()
    loaded = load_run(tmp_path / "run", "cpu")
    assert loaded.scene.eval_idx == [] and loaded.scene.train_idx == list(range(8))
    assert loaded.model.appearance.embedding.num_embeddings == 8
    query.main([f"run={tmp_path / 'run'}", "prompt=red mug", f"out={tmp_path / 'q'}", "device=cpu"])
    assert (tmp_path / "q" / "red_mug" / "frame_00001.json").is_file()  # the first training view
    from lerf.evaluation.views import evaluate_views

    with pytest.raises(ValueError, match="no held-out view"):
        evaluate_views(loaded.model, loaded.scene, tmp_path / "ev")
