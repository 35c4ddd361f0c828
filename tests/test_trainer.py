import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lerf.evaluation.after_training import evaluate_trained
from lerf.model.checkpoint import checkpoint_files, load_checkpoint
from lerf.train.optim import lr_factor
from lerf.train.trainer import RunDirError, train
from tests.helpers import CONF_DIR, tiny_config


def test_lr_schedule():
    assert lr_factor(0, 1e-2, 1e-3, 5000) == pytest.approx(1.0)
    assert lr_factor(2500, 1e-2, 1e-3, 5000) == pytest.approx(10 ** -0.5)
    assert lr_factor(5000, 1e-2, 1e-3, 5000) == pytest.approx(0.1)
    assert lr_factor(30000, 1e-2, 1e-3, 5000) == pytest.approx(0.1)


@pytest.mark.parametrize("scene", ["demo", "teacup", "kitchen", "espresso", "custom"])
@pytest.mark.parametrize("model", ["demo", "nerfacto", "lite"])
def test_every_config_composes(scene, model):
    from lerf.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"scene={scene}", f"model={model}", "scene.path=/x"])
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.model.name == model and cfg.scene.name == scene


def test_real_scene_presets_use_real_encoders():
    from lerf.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["scene=teacup"])
    assert cfg.encoder.clip == "openclip" and cfg.encoder.dino == "dino"
    assert cfg.trainer.max_steps == 30000 and cfg.optim.weight_decay == 1e-9
    assert cfg.scene.path.endswith("teatime")


def test_short_run_loss_falls_and_writes_eval(tmp_path):
    cfg = tiny_config(tmp_path, "model.language.enabled=false", "trainer.max_steps=60", "trainer.log_every=1")
    summary = train(cfg, tmp_path / "run", evaluate=evaluate_trained)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    ea.Reload()
    losses = [e.value for e in ea.Scalars("loss/rgb")]
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:5]) / 5
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["steps"] == 60 and saved["psnr"] == pytest.approx(summary["psnr"]) and 0 < saved["ssim"] <= 1
    # 8 views, scene.eval_every=4: frames 0 and 4 are held out (files are numbered from 1)
    rendered = sorted(p.name for p in (tmp_path / "run" / "eval").glob("*_rgb.png"))
    assert rendered == ["frame_00001_rgb.png", "frame_00005_rgb.png"] and saved["num_views"] == 2
    # the checkpoint alone describes the run
    state = load_checkpoint(tmp_path / "run")
    assert state.config.resolved["hashgrid_backend"] == "torch" and state.step == 60


def test_resume_matches_uninterrupted(tmp_path):
    common = ("trainer.max_steps=20", "trainer.checkpoint_every=10", "trainer.eval_at_end=false")
    full = tiny_config(tmp_path, *common)
    train(full, tmp_path / "full")
    half = tiny_config(tmp_path, "trainer.max_steps=10", "trainer.checkpoint_every=10", "trainer.eval_at_end=false")
    train(half, tmp_path / "half")
    # resume keeps the run's own config; only the command line's keys change it
    resumed = tiny_config(tmp_path, *common, f"resume={tmp_path / 'half'}")
    train(resumed, tmp_path / "ignored", overrides=[f"resume={tmp_path / 'half'}", "trainer.max_steps=20"])
    a = load_checkpoint(tmp_path / "full").model
    b = load_checkpoint(tmp_path / "half").model
    assert load_checkpoint(tmp_path / "half").step == 20
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_existing_run_is_not_overwritten(tmp_path):
    cfg = tiny_config(tmp_path, "model.language.enabled=false", "trainer.max_steps=2", "trainer.eval_at_end=false")
    train(cfg, tmp_path / "run")
    (saved,) = checkpoint_files(tmp_path / "run")
    before = saved.read_bytes()
    with pytest.raises(RunDirError, match="already holds a run"):
        train(cfg, tmp_path / "run")
    assert checkpoint_files(tmp_path / "run") == [saved] and saved.read_bytes() == before


def test_resume_missing_run_is_clear(tmp_path):
    cfg = tiny_config(tmp_path, f"resume={tmp_path / 'nope'}")
    with pytest.raises(FileNotFoundError, match="nope"):
        train(cfg, tmp_path / "x")


def test_every_experiment_composes():
    import os

    from lerf.config import register_configs, to_typed

    register_configs()
    names = sorted(f[:-5] for f in os.listdir(CONF_DIR + "/experiment") if f.endswith(".yaml"))
    # One overlay per row of the current sensitivity table (docs), plus the previous demo preset.
    assert set(names) == {"baseline", "no_scale_input", "scale_no_depth", "single_scale", "no_sample_norm",
                          "no_dino", "no_visibility", "uniform_rays", "narrow_uniform",
                          "authors_scale", "one_canonical", "max_canonical"}
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for name in names:
            cfg = to_typed(compose("train", overrides=[f"experiment={name}"]))
            assert cfg.experiment == name
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        assert not compose("train", overrides=["experiment=no_dino"]).model.language.dino_enabled
        official = compose("train", overrides=["model/language=official"]).model.language
        assert len(official.grids) == 2 and official.samples_per_ray == 8  # only the grid changed


def test_unbounded_contracted_scene_trains(tmp_path):
    """Real captures are unbounded: contraction + piecewise sampling must train too."""
    cfg = tiny_config(tmp_path, "scene.bounded=false", "model.language.enabled=false", "trainer.max_steps=30",
                      "trainer.log_every=1", "trainer.eval_at_end=false")
    train(cfg, tmp_path / "run")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    ea.Reload()
    losses = [e.value for e in ea.Scalars("loss/rgb")]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


def test_foreign_or_old_checkpoint_is_a_clear_error(tmp_path):
    from lerf.model.checkpoint import CheckpointError, checkpoint_file

    path = checkpoint_file(tmp_path / "run", 3)
    path.parent.mkdir(parents=True)
    torch.save({"model": {}, "step": 3}, path)  # an older lerf's (or someone else's) checkpoint
    with pytest.raises(CheckpointError, match=f"{path}.*not a lerf checkpoint"):
        load_checkpoint(tmp_path / "run")
    torch.save({"format": "lerf-checkpoint", "version": 99}, path)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "run")
