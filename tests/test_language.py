import json
import math

import numpy as np
import pytest
import torch

from lerf.config import RelevancyConfig
from lerf.model.checkpoint import checkpoint_files
from lerf.query.engine import QueryEngine
from lerf.query.relevancy import best_scale, relevancy, scale_values
from lerf.query.run import load_run
from lerf.train.supervision import clip_loss, sample_crop_fracs
from lerf.train.trainer import train
from tests.helpers import LANG_RUN_STEPS, tiny_config


def test_relevancy_query_equal_to_canonical_is_half():
    canon = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    embeds = torch.nn.functional.normalize(torch.randn(5, 16), dim=-1)
    # the query is canonical phrase 2; any other phrase that scores higher only lowers the min
    rel = relevancy(embeds, canon[2], canon, temperature=10.0)
    assert (rel <= 0.5 + 1e-6).all()
    only = relevancy(embeds, canon[2], canon[2:3], temperature=10.0)
    assert torch.allclose(only, torch.full((5,), 0.5))


def test_relevancy_worked_example():
    e = torch.tensor([[1.0, 0.0]])
    q = torch.tensor([1.0, 0.0])
    c = torch.tensor([[0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    # pairwise softmax exp(10*1)/(exp(10*1)+exp(10*c·e)); the min is over the closer phrase
    expected = 1 / (1 + math.exp(-10 * (1 - math.sqrt(0.5))))
    assert relevancy(e, q, c, 10.0).item() == pytest.approx(expected, rel=1e-5)


def test_scale_search_picks_planted_scale():
    cfg = RelevancyConfig()
    scales = scale_values(cfg)
    assert len(scales) == 30 and scales[0] == 0.0 and scales[-1] == pytest.approx(2.0)
    maps = torch.rand(30, 100) * 0.5
    maps[17, 42] = 0.9
    idx, best = best_scale(maps)
    assert idx == 17 and best[42] == pytest.approx(0.9)


def test_clip_loss_nan_safe_and_kinds():
    pred = torch.zeros(3, 8)  # a ray with no weight renders a zero embedding
    target = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    keep = torch.ones(3, dtype=torch.bool)
    for kind in ("huber", "cosine"):
        assert torch.isfinite(clip_loss(pred, target, kind, 1.25, keep))
        assert clip_loss(pred, target, kind, 1.25, torch.zeros(3, dtype=torch.bool)) == 0  # no ray to learn from
    with pytest.raises(ValueError, match="huber or cosine"):
        clip_loss(pred, target, "l3", 1.25, keep)


def test_crop_sampling_is_uniform_in_crop_fraction():
    from types import SimpleNamespace

    from lerf.train.supervision import LanguageSupervision

    sup = LanguageSupervision(None, SimpleNamespace(min_frac=0.05, max_frac=0.5), None, 256, torch.ones(1))
    lin = sample_crop_fracs(200_000, sup, torch.Generator().manual_seed(0))
    assert lin.min() >= 0.05 and lin.max() <= 0.5
    # Share of crops at or below 12 % of the image height: 0.07 / 0.45.
    assert (lin <= 0.12).float().mean().item() == pytest.approx(0.07 / 0.45, abs=0.01)


def test_relevancy_higher_inside_object(lang_run):
    loaded = load_run(lang_run, "cpu")
    engine = QueryEngine(loaded.model, loaded.text_encoder(), loaded.cfg.relevancy, chunk=1024)
    scene = loaded.scene
    name_to_id = {v: k for k, v in scene.labels.items()}
    cam = scene.train_idx[0]
    ids = scene.object_ids[cam]
    checked = 0
    for name in ("blue teapot", "white plate", "yellow banana"):
        mask = ids == name_to_id[name]
        if mask.sum() < 20:
            continue
        rel = engine.query(name, scene.cameras, cam).relevancy
        assert rel[mask].mean() > rel[~mask].mean() + 0.05, name
        checked += 1
    assert checked >= 2


def test_cached_query_matches_exact(lang_run):
    loaded = load_run(lang_run, "cpu")
    engine = loaded.engine(chunk=1024)  # per-sample normalisation and the run's visibility grid
    assert engine.visible is not None and (lang_run / "visibility.pt").is_file()
    cam = loaded.scene.eval_idx[0]
    for prompt in ("red mug", "yellow banana"):
        cached = engine.query(prompt, loaded.scene.cameras, cam)
        exact = engine.query_exact(prompt, loaded.scene.cameras, cam)
        assert cached.scale_idx == exact.scale_idx
        assert torch.allclose(cached.maps, exact.maps, atol=1e-5)  # fp32 cache on CPU: exact up to rounding
        assert cached.peak() == exact.peak()


def test_clip_factors_skip_zero_weight_samples_exactly(lang_run):
    """The query cache's factors, computed on the samples of non-zero weight only, equal the
    dense formula over every sample (H = sum w_k/n_k h_k, A = sum w_k/n_k, norm ||W H + c A||)."""
    model = load_run(lang_run, "cpu").model
    g = torch.Generator().manual_seed(0)
    r, k = 64, model.cfg.language.samples_per_ray
    pos = model.geometry.bound * (2 * torch.rand(r, k, 3, generator=g) - 1) * 0.5
    w = torch.rand(r, k, generator=g)
    w[torch.rand(r, k, generator=g) < 0.3] = 0.0  # as the visibility filter drops samples
    w[0] = 0.0  # a ray with nothing visible
    scales = torch.tensor([0.05, 0.5, 1.5])
    with torch.no_grad():
        big_h, a, norms = model.clip_factors(pos, w, scales)
        b = model.language_bottleneck(pos)
        layer = model.language.clip_out
        for i, s in enumerate(scales.tolist()):
            h = model.language.clip_hidden(b, torch.full((r * k,), s))
            wk = w / layer(h).norm(dim=-1).reshape(r, k) if model.cfg.language.normalize_samples else w
            dense_h = torch.einsum("rk,rkh->rh", wk, h.reshape(r, k, -1))
            torch.testing.assert_close(big_h[i], dense_h, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(a[i], wk.sum(-1), rtol=1e-5, atol=1e-6)
            dense_norm = (dense_h @ layer.weight.T + wk.sum(-1)[:, None] * layer.bias).norm(dim=-1)
            torch.testing.assert_close(norms[i], dense_norm, rtol=1e-5, atol=1e-6)
    assert torch.equal(big_h[:, 0], torch.zeros_like(big_h[:, 0])) and torch.equal(norms[:, 0], torch.zeros(3))


def test_query_cli_outputs_and_no_overwrite(lang_run, tmp_path):
    import query

    ckpt = checkpoint_files(lang_run)[0]
    before = ckpt.stat().st_mtime_ns
    out = tmp_path / "q"
    query.main([f"run={lang_run}", "prompt=[red mug,blue teapot]", f"out={out}", "views=0", "device=cpu"])
    summary = json.loads((out / "red_mug" / "frame_00001.json").read_text())
    assert 0.0 <= summary["scale_m"] <= 2.0 and len(summary["peak_xy"]) == 2
    rel = np.load(out / "red_mug" / "frame_00001_relevancy.npy")
    assert rel.shape == (48, 48) and np.isfinite(rel).all()
    for suffix in ("relevancy.png", "overlay.png", "rgb.png"):
        assert (out / "blue_teapot" / f"frame_00001_{suffix}").is_file()
    with pytest.raises(FileExistsError, match="overwrite=true"):
        query.main([f"run={lang_run}", "prompt=red mug", f"out={out}", "views=0", "device=cpu"])
    assert ckpt.stat().st_mtime_ns == before  # query never modifies the run


def test_query_3d_ply_visibility(lang_run, tmp_path):
    import query
    from plyfile import PlyData

    from lerf.data.scene import load_scene

    out = tmp_path / "q3"
    query.main([f"run={lang_run}", "prompt=red mug", f"out={out}", "views=0,1,2", "device=cpu", "ply=true"])
    path = out / "red_mug" / "points.ply"
    assert b"format binary_little_endian 1.0" in path.read_bytes()[:200]
    vertex = PlyData.read(str(path))["vertex"]
    names = [p.name for p in vertex.properties]
    assert names == ["x", "y", "z", "red", "green", "blue", "relevancy"]
    assert vertex.count > 0
    # Where the points are, checked against the demo's ground truth: every labelled surface pixel
    # of the training views, back-projected with its true depth, in the .ply's (world) frame. Most
    # points must lie nearer to the mug's true surface than to any other object's, and within the
    # mug's bounding-sphere radius of it. (The tiny run's soft geometry puts some points off it:
    # hence "most"; a wrong back-projection or a missing filter puts most of them elsewhere.)
    scene = load_scene(load_run(lang_run, "cpu").cfg.scene, generate=False)  # the true poses, not the fitted
    points = torch.from_numpy(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1).astype(np.float32))
    surface, ids = true_surface(scene)
    mug = next(i for i, name in scene.labels.items() if name == "red mug")
    nearest = ids[torch.cdist(points, surface).argmin(1)]
    to_mug = torch.cdist(points, surface[ids == mug]).min(1).values
    radius_m = scene.demo.hierarchy["objects"][str(mug)]["size_m"] / 2
    assert (nearest == mug).float().mean() >= 0.8, torch.bincount(nearest).tolist()
    assert (to_mug <= radius_m).float().mean() >= 0.8, to_mug.quantile(torch.tensor([0.5, 0.9])).tolist()


def true_surface(scene) -> tuple[torch.Tensor, torch.Tensor]:
    """World positions and object ids of the demo's labelled surface pixels in the training views,
    from the true camera-z depth (`scene.demo.depth_z_m`) and id masks (`scene.object_ids`)."""
    from lerf.data.cameras import backproject

    points, ids = [], []
    for v in scene.train_idx:
        depth = scene.demo.depth_z_m[v]
        hit = torch.isfinite(depth).reshape(-1)
        xyz = backproject(scene.cameras, v, torch.where(torch.isfinite(depth), depth, 0.0), scene.scale_factor)
        points.append(scene.to_world(xyz[hit]))
        ids.append(scene.object_ids[v].reshape(-1)[hit])
    return torch.cat(points), torch.cat(ids)


def test_query_video_writes_mp4(lang_run, tmp_path, capsys):
    import imageio.v3 as iio

    import query

    out = tmp_path / "v"
    query.main([f"run={lang_run}", "prompt=red mug", f"out={out}", "views=0,4", "device=cpu", "video=true",
                "video_frames=4"])
    frames = iio.imread(out / "red_mug" / "path.mp4")
    assert frames.shape[0] == 4 and frames.shape[-1] == 3
    assert not (out / "red_mug" / "path.gif").exists() and "notice" not in capsys.readouterr().out


def test_video_falls_back_to_gif_and_says_so(tmp_path, monkeypatch, capsys):
    import imageio.v3 as iio
    import numpy as np

    from lerf.query import outputs as query_outputs

    real = iio.imwrite

    def no_mp4(path, *args, **kwargs):
        if str(path).endswith(".mp4"):
            raise RuntimeError("no ffmpeg")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(query_outputs.iio, "imwrite", no_mp4)
    frames = [np.full((16, 16, 3), 40 * i, np.uint8) for i in range(3)]
    written = query_outputs.write_video(tmp_path / "path.mp4", frames)
    assert written == tmp_path / "path.gif" and written.is_file()
    assert "GIF instead" in capsys.readouterr().out


@pytest.mark.parametrize("args, error, message", [
    (["run=/nonexistent/run", "prompt=mug"], FileNotFoundError, "run directory /nonexistent/run not found"),
    (["prompt=mug"], SystemExit, r"missing required argument\(s\): run=\.\.\."),
])
def test_query_cli_errors(args, error, message, capsys):
    import query

    with pytest.raises(error, match=message):  # lerf.apps.cli.run prints either as one line
        query.main(args)


def test_query_empty_prompt(lang_run):
    import query

    with pytest.raises(SystemExit, match="empty prompt"):
        query.main([f"run={lang_run}", "prompt=' '"])


def test_eval_scripts_write_reports(lang_run, tmp_path):
    from eval import localization, segmentation  # noqa: F401  (scripts importable from the repo root)

    localization.main([f"run={lang_run}", f"out={tmp_path}", "device=cpu"])
    segmentation.main([f"run={lang_run}", f"out={tmp_path}", "device=cpu"])
    loc = json.loads((tmp_path / "localization.json").read_text())
    seg = json.loads((tmp_path / "segmentation.json").read_text())
    assert 0.0 <= loc["overall"] <= 1.0 and loc["num_queries"] > 0 and loc["protocol"] == "lerf"
    assert loc["levels"] == seg["levels"] == "chosen_scale"  # the report names the protocol's input
    assert 0.0 <= seg["miou"] <= 1.0
    assert (tmp_path / "localization.md").read_text().startswith("#")


def test_one_pass_evaluation_matches_the_two_reports_and_renders_each_view_once(lang_run, tmp_path):
    """The end-of-training pass (one cached view at a time) writes what the two scripts write."""
    from lerf.evaluation.language_eval import (evaluate_localization, evaluate_localization_and_segmentation,
                                               evaluate_segmentation)
    from lerf.evaluation.run_eval import LabelledEvalArgs, labelled_views, open_run

    engine, scene, name, _ = open_run(LabelledEvalArgs(run=str(lang_run), device="cpu"))
    (tmp_path / "two").mkdir()
    (tmp_path / "one").mkdir()
    evaluate_localization(engine, scene, name, tmp_path / "two")
    evaluate_segmentation(engine, scene, name, tmp_path / "two")
    engine.max_cached_views, engine._views = 1, type(engine._views)()
    renders = []
    render = engine._render
    engine._render = lambda cameras, cam: renders.append(cam) or render(cameras, cam)
    evaluate_localization_and_segmentation(engine, scene, name, tmp_path / "one")
    assert sorted(renders) == sorted(cam for _, cam in labelled_views(scene, None))  # each labelled view once
    for report in ("localization.json", "segmentation.json"):
        assert json.loads((tmp_path / "one" / report).read_text()) == json.loads((tmp_path / "two" / report).read_text())


def test_eval_query_time_switches_reach_the_engine(lang_run):
    from lerf.evaluation.run_eval import LabelledEvalArgs, open_run

    engine = open_run(LabelledEvalArgs(run=str(lang_run), device="cpu"))[0]
    assert engine.visible is not None and engine.cfg.visible_share  # the run's own settings
    engine = open_run(LabelledEvalArgs(run=str(lang_run), device="cpu", visibility_filter=False,
                                       visible_share=False))[0]
    assert engine.visible is None and not engine.cfg.visible_share


def test_missing_scene_cache_is_a_clear_error(lang_run, tmp_path):
    import shutil

    from lerf.data.nerfstudio import SceneFormatError

    state = torch.load(checkpoint_files(lang_run)[0], weights_only=False)
    moved = tmp_path / "moved"
    scene_root = next((lang_run.parent / "scenes").iterdir())
    shutil.move(str(scene_root), moved)
    try:
        with pytest.raises(SceneFormatError, match="demo scene cache .* is missing"):
            load_run(lang_run, "cpu")
    finally:
        shutil.move(str(moved), scene_root)
    assert state["step"] == LANG_RUN_STEPS


def test_tensorboard_shows_relevancy_image(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lerf.evaluation.progress import progress_pictures

    cfg = tiny_config(tmp_path, "trainer.max_steps=4", "trainer.image_every=2", "trainer.eval_at_end=false")
    train(cfg, tmp_path / "run", pictures=progress_pictures)
    ea = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    ea.Reload()
    assert {"eval/rgb", "eval/depth", f"eval/relevancy/{cfg.relevancy.tensorboard_prompt}"} <= set(ea.Tags()["images"])
    assert {"loss/clip", "loss/dino", "loss/rgb", "rays_per_s", "lr"} <= set(ea.Tags()["scalars"])


def test_eval_render_rescores_from_checkpoint(lang_run, tmp_path):
    from eval import render

    render.main([f"run={lang_run}", f"out={tmp_path}", "device=cpu"])
    result = json.loads((tmp_path / "eval_render.json").read_text())
    assert result["steps"] == LANG_RUN_STEPS and result["num_views"] == 2 and math.isfinite(result["psnr"])
    assert len(list((tmp_path / "eval_render").glob("*_rgb.png"))) == 2
    with pytest.raises(FileExistsError):
        render.main([f"run={lang_run}", f"out={tmp_path}", "device=cpu"])


# ---------------------------------------------------------------- scale-input switches (sensitivity rows)

def _language_field(scale_mode: str):
    from lerf.config import GridConfig, LanguageConfig
    from lerf.fields.language_field import LanguageField

    cfg = LanguageConfig(grids=[GridConfig(num_levels=2, features_per_level=2, log2_hashmap_size=8,
                                           base_resolution=4, max_resolution=8)],
                         bottleneck_dim=8, hidden_dim=16, clip_layers=2, scale_mode=scale_mode)
    return LanguageField(cfg, "torch", clip_dim=6, dino_dim=0)


def test_no_scale_input_makes_the_clip_head_scale_blind():
    torch.manual_seed(0)
    b = torch.randn(5, 8)
    small, large = torch.full((5,), 0.05), torch.full((5,), 0.8)
    with_scale, without = _language_field("depth"), _language_field("none")
    without.load_state_dict(with_scale.state_dict())
    assert not torch.allclose(with_scale.clip(b, small), with_scale.clip(b, large))
    assert torch.equal(without.clip(b, small), without.clip(b, large))
    assert torch.equal(without.clip_hidden(b, small), without.clip_hidden(b, large))
    with pytest.raises(ValueError, match="scale_mode"):
        _language_field("pixels")


@pytest.mark.parametrize("mode", ["depth", "none"])
def test_clip_hidden_per_scale_matches_clip_hidden(mode):
    """The query's hoisted first layer gives the head's hidden output at every scale, scale-blind too."""
    torch.manual_seed(0)
    field = _language_field(mode)
    b = torch.randn(7, 8)
    scales = [0.0, 0.05, 0.6, 2.0]
    hoisted = list(field.clip_hidden_per_scale(b, scales))
    assert len(hoisted) == len(scales)
    for s, h in zip(scales, hoisted):
        torch.testing.assert_close(h, field.clip_hidden(b, torch.full((7,), s)), rtol=1e-5, atol=1e-6)
    if mode == "depth":
        assert not torch.allclose(hoisted[1], hoisted[3])


def test_composite_dino_equals_compositing_per_sample_features():
    """The DINO head's last layer applied once per ray after the weighted sum = per sample before it,
    weights not summing to 1 included (the bias scales with the ray's total weight)."""
    from lerf.config import GridConfig, LanguageConfig
    from lerf.fields.language_field import LanguageField
    from lerf.render import volume

    torch.manual_seed(0)
    cfg = LanguageConfig(grids=[GridConfig(num_levels=2, features_per_level=2, log2_hashmap_size=8,
                                           base_resolution=4, max_resolution=8)],
                         bottleneck_dim=8, hidden_dim=16, dino_layers=1)
    field = LanguageField(cfg, "torch", clip_dim=6, dino_dim=5)
    torch.nn.init.normal_(field.dino_head[-1].bias)  # a non-zero bias, which the weight sum must scale
    r, k = 4, 3
    b = torch.randn(r * k, 8)
    w = torch.rand(r, k)
    w[0] = 0.0  # an empty ray renders zero
    w[1] *= 0.1  # a ray that is mostly transparent
    per_sample = volume.composite(w, field.dino(b).reshape(r, k, -1))
    torch.testing.assert_close(field.composite_dino(b, w), per_sample, rtol=1e-5, atol=1e-6)
    assert torch.equal(field.composite_dino(b, w)[0], torch.zeros(5))


def test_tensorboard_relevancy_picture_is_capped_in_size(tmp_path, monkeypatch):
    """progress_pictures itself, recording each picture's size (the renders are stubbed: only the
    cameras they are asked for matter here)."""
    from dataclasses import replace
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from lerf.data.scene import load_scene
    from lerf.evaluation import progress
    from lerf.evaluation.progress import RELEVANCY_MAX_PX
    from lerf.model import LerfModel

    def fake_render(model, cameras, cam, chunk, extras=None):
        h, w = cameras.height, cameras.width
        return {"rgb": torch.zeros(h, w, 3), "depth_m": torch.ones(h, w), "relevancy": torch.zeros(h, w)}

    monkeypatch.setattr(progress, "render_view", fake_render)

    class FakeEngine:  # the relevancy picture's size is the camera's it is asked about
        def __init__(self, *args, **kwargs):
            pass

        def query_exact(self, prompt, cameras, cam):
            return SimpleNamespace(relevancy=torch.zeros(cameras.height, cameras.width))

    monkeypatch.setattr(progress, "QueryEngine", FakeEngine)
    model = LerfModel.__new__(LerfModel)  # the type the signature asks for; nothing of it is run
    torch.nn.Module.__init__(model)
    model.language = torch.nn.Identity()
    cfg = OmegaConf.to_object(tiny_config(tmp_path))
    scene = load_scene(cfg.scene)
    for width, height in ((3 * RELEVANCY_MAX_PX, 2 * RELEVANCY_MAX_PX), (scene.cameras.width, scene.cameras.height)):
        big = replace(scene, cameras=scene.cameras.resized(width, height))
        made = progress.progress_pictures(model, big, object(), cfg)  # object(): a text encoder stand-in
        pictures = {tag: tuple(img.shape) for tag, img in made.items()}
        prompt = cfg.relevancy.tensorboard_prompt
        assert pictures["eval/rgb"] == (height, width, 3)  # RGB and depth stay full size
        if width > RELEVANCY_MAX_PX:  # 384 x 256 -> 128 x 85 (the aspect ratio kept)
            assert pictures[f"eval/relevancy/{prompt}"] == (round(2 * RELEVANCY_MAX_PX / 3), RELEVANCY_MAX_PX, 3)
        else:  # already small: unchanged
            assert pictures[f"eval/relevancy/{prompt}"] == (height, width, 3)
