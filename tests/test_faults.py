"""Fault injection: runs survive kill -9, damaged and full disks, two processes, bad input (issue 12).

Real processes where it matters: `kill -9` during a checkpoint write and at a random moment, two
trainings on one run, a full (tiny tmpfs) file system. Each case asserts what the user keeps and
what they are told.
"""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from lerf.apps.cli import run as run_cli
from lerf.config import TrainConfig, to_typed
from lerf.data.atomic import DiskFullError, replace_atomically, write_json
from lerf.data.nerfstudio import SceneFormatError, read_nerfstudio
from lerf.encoders.cache import scene_cache_dir
from lerf.model import checkpoint as ckpt
from lerf.model.checkpoint import CheckpointError, NonFiniteError, checkpoint_files, load_checkpoint
from lerf.query.outputs import prompt_dirname
from lerf.train.runlock import RunInUseError, run_lock
from lerf.train.trainer import train
from tests.helpers import tiny_config, tiny_overrides

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
NO_LANG = ("model.language.enabled=false", "trainer.eval_at_end=false")


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """Scene and feature caches shared by this module's runs (the demo scene is generated once)."""
    root = tmp_path_factory.mktemp("faults")
    train(tiny_config(root, *NO_LANG, "trainer.max_steps=1"), root / "warmup")
    return root


def _train(shared: Path, run: Path, *extra: str, overrides=(), **kw) -> dict:
    return train(tiny_config(shared, *NO_LANG, *extra), run, overrides=list(overrides), **kw)


def _steps(run: Path) -> list[int]:
    return [ckpt._file_step(p) for p in checkpoint_files(run)]


def _python(code: str, *args: str, cwd: Path = REPO, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=cwd, env=ENV, text=True,
                          capture_output=True, timeout=timeout)


def _one_line_error(stderr: str, *needles: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------------- 1. resume config

def test_resume_keeps_the_runs_own_config_and_logs_changed_keys(shared, tmp_path, caplog):
    run = tmp_path / "run"
    _train(shared, run, "trainer.max_steps=10", "trainer.checkpoint_every=5", "trainer.rays_per_batch=128")
    # The preset says 20 steps and 256 rays; resuming without overrides keeps the run's 10 and 128.
    preset = tiny_config(shared, f"resume={run}")
    before = checkpoint_files(run)[0].read_bytes()
    train(preset, tmp_path / "ignored", overrides=[f"resume={run}"])
    assert _steps(run)[0] == 10 and checkpoint_files(run)[0].read_bytes() == before
    assert not (tmp_path / "ignored").exists()
    with caplog.at_level(logging.INFO, logger="lerf.train.trainer"):
        train(preset, tmp_path / "ignored", overrides=[f"resume={run}", "trainer.max_steps=15"])
    state = load_checkpoint(run)
    assert state.step == 15 and state.config.trainer.rays_per_batch == 128
    assert "trainer.max_steps: 10 -> 15" in caplog.text
    with pytest.raises(ValueError, match="resume keeps the run's own config: 'model.hidden_dim=8'"):
        train(preset, tmp_path / "ignored", overrides=[f"resume={run}", "model.hidden_dim=8"])


@pytest.mark.slow
def test_two_processes_kill9_and_train_py_resume(shared, tmp_path):
    """A second train.py on a locked run is refused naming the holder's pid; after kill -9 (at any
    moment, checkpoint writes included) train.py resume=<run> continues it from another directory,
    with its own config, without touching .hydra/ or creating outputs/<date>/."""
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = [sys.executable, str(REPO / "train.py")]
    with open(tmp_path / "holder.err", "w") as err:
        holder = subprocess.Popen(cmd + tiny_overrides(shared) + list(NO_LANG) + [
            "trainer.max_steps=100000", "trainer.checkpoint_every=2", f"hydra.run.dir={run}"],
            cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.time() + 120
        while not (checkpoint_files(run) and (run / ".lock.pid").is_file()):
            assert holder.poll() is None and time.time() < deadline, (tmp_path / "holder.err").read_text()[-3000:]
            time.sleep(0.2)
        os.kill(holder.pid, signal.SIGSTOP)  # frozen at a random moment, lock held, CPU free for the second
        hydra_config = (run / ".hydra" / "config.yaml").read_bytes()
        second = subprocess.run(cmd + [f"resume={run}"], cwd=elsewhere, env=ENV, text=True, capture_output=True,
                                timeout=120)
        assert second.returncode == 2
        _one_line_error(second.stderr, f"in use by pid {holder.pid}")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    step = load_checkpoint(run).step
    done = subprocess.run(cmd + [f"resume={run}", f"trainer.max_steps={step + 2}"], cwd=elsewhere, env=ENV,
                          text=True, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_checkpoint(run).step == step + 2 and len(checkpoint_files(run)) == 2
    assert (run / ".hydra" / "config.yaml").read_bytes() == hydra_config
    assert not (elsewhere / "outputs").exists() and not (tmp_path / "outputs").exists()
    resumed = (run / f"config_resume_{step}.yaml").read_text()
    assert f"max_steps: {step + 2}" in resumed and "rays_per_batch: 256" in resumed
    assert f"trainer.max_steps: 100000 -> {step + 2}" in (run / "train.log").read_text()
    assert not list((run / "checkpoints").glob(".*tmp*"))


# ------------------------------------------------------------------------------ 2. atomic writes

def test_atomic_write_keeps_the_old_file_when_killed_or_failing(tmp_path):
    target = tmp_path / "eval.json"
    write_json(target, {"v": "old"})
    killed = _python("""
        import os, signal, sys
        from lerf.data.atomic import replace_atomically
        def half(tmp):
            tmp.write_text('{"v": "ne')
            os.kill(os.getpid(), signal.SIGKILL)
        replace_atomically(sys.argv[1], half)
    """, str(target))
    assert killed.returncode == -signal.SIGKILL
    assert json.loads(target.read_text()) == {"v": "old"}

    def failing(tmp: Path) -> None:
        tmp.write_text("partial")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        replace_atomically(target, failing)
    assert json.loads(target.read_text()) == {"v": "old"}
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name and str(os.getpid()) in p.name] == []


# ------------------------------------------------------------------------------ 3. K checkpoints

def test_keeps_k_checkpoints_and_falls_back_past_damaged_ones(shared, tmp_path, caplog, capsys):
    from lerf.evaluation.after_training import evaluate_trained

    run = tmp_path / "run"
    _train(shared, run, "trainer.max_steps=20", "trainer.checkpoint_every=5")
    newest, older = checkpoint_files(run)
    assert _steps(run) == [20, 15]  # trainer.keep_checkpoints=2
    newest.write_bytes(newest.read_bytes()[:1000])  # torn write
    with caplog.at_level(logging.WARNING, logger="lerf.model.checkpoint"):
        assert load_checkpoint(run).step == 15
    assert f"{newest} is damaged" in caplog.text and "falling back" in caplog.text
    # none good: one line naming every file
    good = older.read_bytes()
    older.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(run)
    assert str(newest) in str(err.value) and str(older) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SystemExit) as exit_:
        run_cli(lambda: load_checkpoint(run))
    assert exit_.value.code == 2
    _one_line_error(capsys.readouterr().err, "no usable checkpoint")
    # resume sets the damaged file aside and goes on; a damaged eval.json (older, non-atomic
    # lerf) does not stop the final evaluation
    older.write_bytes(good)
    (run / "eval.json").write_text('{"psnr": 3')
    train(tiny_config(shared, f"resume={run}"), run, evaluate=evaluate_trained,
          overrides=[f"resume={run}", "trainer.eval_at_end=true"])
    assert _steps(run) == [20, 15] and newest.with_name(newest.name + ".bad").is_file()
    assert json.loads((run / "eval.json").read_text())["steps"] == 20
    assert (run / "eval_stepdamaged.json").is_file()


def test_checkpoint_is_verified_after_writing(shared, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _train(shared, run, "trainer.max_steps=5", "trainer.checkpoint_every=5")
    state = load_checkpoint(run)
    state.step = 6
    monkeypatch.setattr(torch, "save", lambda obj, f: Path(f).write_bytes(b"garbage"))  # a silently bad write
    with pytest.raises(CheckpointError, match="did not read back"):
        ckpt.save_checkpoint(run, state)
    assert _steps(run) == [5] and load_checkpoint(run).step == 5


@pytest.mark.slow
def test_kill9_during_a_checkpoint_write_then_resume(shared, tmp_path):
    run = tmp_path / "run"
    killed = _python("""
        import os, signal, sys, torch
        from pathlib import Path
        from lerf.train.trainer import train
        from tests.helpers import tiny_config
        real, calls = torch.save, []
        def dying_save(obj, f):
            calls.append(f)
            real(obj, f)
            if len(calls) == 2:  # the second checkpoint: half on disk, then kill -9
                data = Path(f).read_bytes()
                Path(f).write_bytes(data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        cfg = tiny_config(Path(sys.argv[1]), "model.language.enabled=false", "trainer.eval_at_end=false",
                          "trainer.max_steps=15", "trainer.checkpoint_every=5")
        train(cfg, Path(sys.argv[2]))
    """, str(shared), str(run))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert _steps(run) == [5] and list((run / "checkpoints").glob(".*.tmp-*"))
    train(tiny_config(shared, f"resume={run}"), run, overrides=[f"resume={run}"])
    assert load_checkpoint(run).step == 15 and _steps(run) == [15, 10]
    assert not list((run / "checkpoints").glob(".*.tmp-*"))


# ----------------------------------------------------------------------------------- 4. paths

def test_runs_store_absolute_paths_and_query_from_another_directory(shared, tmp_path, monkeypatch):
    from lerf.query.run import load_run

    monkeypatch.chdir(tmp_path)
    shutil.copytree(shared / "scenes", tmp_path / "scenes")
    cfg = tiny_config(shared, *NO_LANG, "scene.cache_dir=scenes", "encoder.cache_dir=features",
                      "trainer.max_steps=2")
    train(cfg, Path("run"))
    stored = load_checkpoint(tmp_path / "run").config
    assert stored.scene.cache_dir == str(tmp_path / "scenes") and Path(stored.encoder.cache_dir).is_absolute()
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    assert load_run(tmp_path / "run", "cpu").step == 2  # scene found although the cwd changed


def test_feature_caches_are_keyed_by_the_scenes_resolved_path(tmp_path, monkeypatch):
    a, b = tmp_path / "a" / "teatime", tmp_path / "b" / "teatime"
    assert scene_cache_dir("cache", a) != scene_cache_dir("cache", b)
    assert scene_cache_dir("cache", a).name.startswith("teatime-")
    monkeypatch.chdir(tmp_path / "..")
    rel = Path(tmp_path.name) / "a" / "teatime"
    assert scene_cache_dir(tmp_path / "cache", rel) == scene_cache_dir(tmp_path / "cache", a)


# ------------------------------------------------------------------------------------- 5. lock

def test_run_lock_is_exclusive_and_names_the_holder(tmp_path):
    with run_lock(tmp_path):
        code = "import sys\nfrom lerf.train.runlock import run_lock\nwith run_lock(sys.argv[1]): pass\n"
        second = _python(code, str(tmp_path))  # another process
        assert "RunInUseError" in second.stderr and f"in use by pid {os.getpid()}" in second.stderr
        with pytest.raises(RunInUseError, match=f"in use by pid {os.getpid()}"):
            train(tiny_config(tmp_path, *NO_LANG), tmp_path)
    assert not (tmp_path / "checkpoints").exists()
    with run_lock(tmp_path):  # released: free again
        pass


# -------------------------------------------------------------------------------- 6. full disk

TMPFS_SCRIPT = """
set -e
mount -t tmpfs -o size=3m tmpfs "$1"
mkdir -p "$1/run"
echo keep > "$1/run/keep.txt"
set +e
"$2" "$3/train.py" "${@:4}" "hydra.run.dir=$1/run"
echo "rc=$?"
find "$1/run" -name '*tmp*' -o -name '*.pt'
cat "$1/run/keep.txt"
"""


@pytest.mark.slow
def test_full_disk_says_where_and_how_much_and_leaves_no_temporary(shared, tmp_path):
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {tmp_path}"],
                           capture_output=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs `unshare -rm` with user namespaces)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["unshare", "-rm", "bash", "-c", TMPFS_SCRIPT, "sh", str(mnt), sys.executable, str(REPO),
                           *tiny_overrides(shared), *NO_LANG, "trainer.max_steps=5", "trainer.checkpoint_every=5"],
                          env=ENV, text=True, capture_output=True, timeout=180)
    assert "rc=2" in done.stdout, done.stdout[-2000:] + done.stderr[-3000:]
    line = _one_line_error(done.stderr, f"no space left on {mnt}/run/checkpoints", "needs about", "MB")
    assert "step_00000005.pt" in line
    assert ".pt" not in done.stdout.split("rc=2")[1] and "tmp" not in done.stdout.split("rc=2")[1]
    assert done.stdout.strip().endswith("keep")


def test_full_disk_error_in_process(tmp_path, monkeypatch):
    """Where no tmpfs can be mounted: ENOSPC injected into the writer gives the same message."""
    import errno

    def full(tmp: Path) -> None:
        tmp.write_bytes(b"x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=f"no space left on {tmp_path}: writing a.npy needs about 2.0 MB"):
        replace_atomically(tmp_path / "a.npy", full, needed_bytes=2 << 20)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ 7. bad images

def _scene(root: Path, images: list[np.ndarray], suffix: str = ".png", meta: dict | None = None,
           frames: list[dict] | None = None) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    h, w = images[0].shape[:2]
    out = []
    for i, img in enumerate(images):
        iio.imwrite(root / "images" / f"f{i}{suffix}", img)
        pose = np.eye(4)
        pose[0, 3] = i
        out.append({"file_path": f"images/f{i}{suffix}", "transform_matrix": pose.tolist()})
    for frame, extra in zip(out, frames or []):
        frame.update(extra)
    base = {"fl_x": 10.0, "fl_y": 10.0, "cx": w / 2, "cy": h / 2, "w": w, "h": h, "frames": out, **(meta or {})}
    (root / "transforms.json").write_text(json.dumps(base))
    return root


def test_truncated_image_names_the_file(tmp_path):
    root = _scene(tmp_path, [np.full((6, 8, 3), 40, np.uint8)] * 2)
    data = (root / "images" / "f1.png").read_bytes()
    (root / "images" / "f1.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(SceneFormatError, match=r"frame 'images/f1.png': cannot read image .*f1.png.*truncated"):
        read_nerfstudio(root)


def test_float_tiff_outside_unit_range_names_the_file(tmp_path):
    from PIL import Image

    root = _scene(tmp_path, [np.full((6, 8, 3), 40, np.uint8)] * 2)
    Image.fromarray(np.full((6, 8), 4.0, np.float32), mode="F").save(root / "images" / "f1.tif")
    meta = json.loads((root / "transforms.json").read_text())
    meta["frames"][1]["file_path"] = "images/f1.tif"
    (root / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(SceneFormatError, match=r"f1.tif is a float image with values in \[4, 4\]"):
        read_nerfstudio(root)


def test_alpha_is_composited_onto_the_background_or_rejected(tmp_path):
    grey_alpha = np.zeros((6, 8, 2), np.uint8)
    grey_alpha[..., 0], grey_alpha[:, :4, 1] = 255, 255  # white, left half opaque, right half transparent
    rgba = np.concatenate([np.full((6, 8, 3), 255, np.uint8), grey_alpha[..., 1:]], -1)
    root = _scene(tmp_path / "a", [grey_alpha, rgba])
    with pytest.raises(SceneFormatError, match="f0.png has transparent pixels .* no background colour"):
        read_nerfstudio(root)
    scene = read_nerfstudio(root, background=[0.0, 0.0, 1.0])
    for img in scene.images:
        assert (img[:, :4] == 255).all()  # opaque white stays white
        assert (img[:, 4:] == torch.tensor([0, 0, 255], dtype=torch.uint8)).all()  # transparent -> blue


def test_missing_or_wrong_id_mask_names_the_file(tmp_path):
    from lerf.data.scene import load_id_maps

    imgs = [np.full((6, 8, 3), 40, np.uint8)] * 2
    root = _scene(tmp_path, imgs, frames=[{"mask_id_path": "ids/f0.png"}, {"mask_id_path": "ids/f1.png"}])
    (root / "ids").mkdir()
    iio.imwrite(root / "ids" / "f0.png", np.zeros((6, 8), np.uint8))
    with pytest.raises(SceneFormatError, match=r"frame 'images/f1.png': id mask .*ids/f1.png .*not found"):
        load_id_maps(read_nerfstudio(root), "ids")
    iio.imwrite(root / "ids" / "f1.png", np.zeros((3, 8), np.uint8))
    with pytest.raises(SceneFormatError, match=r"ids/f1.png is uint8 \(3, 8\); expected"):
        load_id_maps(read_nerfstudio(root), "ids")


# -------------------------------------------------------------------- 8. cameras and non-finite

@pytest.mark.parametrize("change, message", [
    ({"fl_x": -10.0}, "focal length must be > 0"),
    ({"fl_y": 0.0}, "focal length must be > 0"),
    ({"transform_matrix": np.zeros((4, 4)).tolist()}, "degenerate rotation"),
    ({"transform_matrix": (np.eye(4) * [2, 1, 1, 1]).tolist()}, "not orthonormal"),
])
def test_bad_intrinsics_and_poses_name_the_frame(tmp_path, change, message):
    root = _scene(tmp_path, [np.full((6, 8, 3), 40, np.uint8)] * 3, frames=[{}, change])
    with pytest.raises(SceneFormatError, match=f"frame 'images/f1.png'.*{message}"):
        read_nerfstudio(root)


def test_non_finite_loss_stops_training_and_is_never_checkpointed(shared, tmp_path, monkeypatch):
    from lerf.train import trainer

    real = trainer.compute_losses

    def diverging(model, batch, step, *args):
        loss, logs, scales = real(model, batch, step, *args)
        if step >= 6:
            loss, logs["loss/total"] = loss * float("nan"), float("nan")
        return loss, logs, scales

    monkeypatch.setattr(trainer, "compute_losses", diverging)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"non-finite loss at step 7 .*Last good checkpoint: .*step_00000005.pt"):
        _train(shared, run, "trainer.max_steps=20", "trainer.checkpoint_every=5")
    assert _steps(run) == [5]
    state = load_checkpoint(run)
    assert all(torch.isfinite(v).all() for v in state.model.values() if v.is_floating_point())
    # weights that went non-finite (the forward pass then fails inside the hash grid) stop it too
    monkeypatch.setattr(trainer, "compute_losses", real)
    real_step = torch.optim.Adam.step

    def poisoning_step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        self.param_groups[0]["params"][0].data.fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", poisoning_step)
    with pytest.raises(NonFiniteError, match="training diverged: non-finite"):
        _train(shared, tmp_path / "run2", "trainer.max_steps=20", "trainer.checkpoint_every=10")
    assert not checkpoint_files(tmp_path / "run2")
    monkeypatch.undo()
    # and weights that went non-finite by another road are refused when saving
    state.model[next(iter(state.model))].fill_(float("inf"))
    state.step = 10
    with pytest.raises(NonFiniteError, match="refusing to checkpoint step 10"):
        ckpt.save_checkpoint(run, state)
    assert _steps(run) == [5]


# ----------------------------------------------------------------------------------- 9. prompts

@pytest.mark.parametrize("arg, message", [
    ("prompt=''", "empty prompt"), ("prompt=null", "prompt is null"), ("prompt=123", "is a number"),
    ("prompt=[]", "holds no prompt"), ("prompt=" + "a" * 2000, "2000 characters"),
    ("prompt=[mug, '']", "empty prompt"),
])
def test_prompts_are_validated_before_the_run_is_opened(arg, message):
    import query

    with pytest.raises(SystemExit, match=message):  # the run does not exist: validation came first
        query.main(["run=/nonexistent/run", arg])


def test_prompt_folders_are_bounded_and_unique():
    names = [prompt_dirname(p) for p in ("red mug", "red_mug", "red mug?", "red  mug", "a" * 300, "a" * 299)]
    assert names[0] == "red_mug" and len(set(names)) == len(names)
    assert all(len(n) <= 50 for n in names)
    assert prompt_dirname("../../etc") not in ("..", "") and "/" not in prompt_dirname("../../etc")


@pytest.mark.slow
def test_query_records_prompt_and_step_and_never_half_writes(shared, tmp_path):
    import query

    run = tmp_path / "run"
    train(tiny_config(shared, "trainer.max_steps=4", "trainer.checkpoint_every=4", "trainer.eval_at_end=false"), run)
    out = tmp_path / "q"
    query.main([f"run={run}", "prompt=[red mug, red_mug, red mug]", f"out={out}", "views=0", "device=cpu"])
    folders = sorted(p.name for p in out.iterdir())
    assert len(folders) == 2 and "red_mug" in folders  # the same text twice is one prompt
    for folder in folders:
        summary = json.loads((out / folder / "summary.json").read_text())
        assert summary[0]["step"] == 4 and summary[0]["prompt"] in ("red mug", "red_mug")
    before = sorted(p for p in out.rglob("*"))
    with pytest.raises(FileExistsError, match="Nothing was written"):
        query.main([f"run={run}", "prompt=[blue teapot, red mug]", f"out={out}", "views=0", "device=cpu"])
    assert sorted(p for p in out.rglob("*")) == before  # blue teapot was not written either


# ----------------------------------------------------------------------------------- 10. schema

@pytest.mark.parametrize("key, value", [
    ("checkpoint_every", 0), ("log_every", 0), ("rays_per_batch", 0), ("max_steps", -5), ("keep_checkpoints", 0),
    ("eval_chunk", 0), ("image_every", -1),
])
def test_zero_or_negative_trainer_settings_are_rejected_at_start_up(tmp_path, key, value):
    with pytest.raises(ValueError, match=f"trainer.{key} must be >= ., got {value}"):
        train(tiny_config(tmp_path, f"trainer.{key}={value}"), tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "scenes").exists()  # before any work


def test_schema_defaults_are_valid():
    from omegaconf import OmegaConf

    # Through the path a composed config takes (merge into the schema, then the __post_init__
    # checks): the defaults pass every check and come back unchanged.
    typed = to_typed(OmegaConf.create(OmegaConf.to_yaml(OmegaConf.structured(TrainConfig))))
    assert isinstance(typed, TrainConfig) and typed == TrainConfig()
    # the same path does refuse a bad value, so passing above means something
    with pytest.raises(ValueError, match="trainer.max_steps must be >= 1, got 0"):
        to_typed(OmegaConf.create({"trainer": {"max_steps": 0}}))


# --------------------------------------------------------------------------------- 11. one line

@pytest.mark.slow
def test_query_py_prints_user_errors_as_one_line(tmp_path):
    query = subprocess.run([sys.executable, str(REPO / "query.py"), f"run={tmp_path / 'nope'}", "prompt=mug"],
                           cwd=tmp_path, env=ENV, text=True, capture_output=True, timeout=120)
    assert query.returncode == 2
    _one_line_error(query.stderr, "nope", "not found")
    # train.py: see test_two_processes_kill9_and_train_py_resume ("in use by pid N")


@pytest.mark.parametrize("script", ["render", "localization", "segmentation"])
def test_eval_scripts_print_one_line_and_debug_shows_the_traceback(script, tmp_path, capsys, monkeypatch):
    import importlib

    module = importlib.import_module(f"eval.{script}")
    monkeypatch.setattr(sys, "argv", [script, f"run={tmp_path / 'nope'}"])
    with pytest.raises(SystemExit) as exit_:
        run_cli(module.main)
    assert exit_.value.code == 2
    _one_line_error(capsys.readouterr().err, "nope")
    monkeypatch.setattr(sys, "argv", [script, f"run={tmp_path / 'nope'}", "debug=true"])
    with pytest.raises(FileNotFoundError):
        run_cli(module.main)


# ---------------------------------------------------------------------- 12. damaged files (issue 27)
# Each file a run or a cache holds, truncated and emptied: rebuilt with a warning, or one line
# naming it. (Checkpoints: test_keeps_k_checkpoints_and_falls_back_past_damaged_ones and below.)

DAMAGES = ("truncated", "emptied")


def _damage(path: Path, how: str) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"")
    return path.read_bytes()


def _snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[bytes, int]]:
    """Every file under `root`: its bytes and modification time (ns)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip}


@pytest.fixture(scope="module")
def lang_tiny(shared) -> Path:
    """A finished 4-step run with the language field (so with visibility.pt); copy it before changing it."""
    run = shared / "lang_tiny"
    train(tiny_config(shared, "trainer.max_steps=4", "trainer.checkpoint_every=4", "trainer.eval_at_end=false"),
          run)
    assert (run / "visibility.pt").is_file()
    return run


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_visibility_grid_is_built_again_with_a_warning(lang_tiny, tmp_path, how, caplog):
    import query

    run = tmp_path / "run"
    shutil.copytree(lang_tiny, run)
    args = ["prompt=red mug", "views=0,1", "device=cpu", "ply=true"]
    query.main([f"run={lang_tiny}", f"out={tmp_path / 'good'}", *args])
    damaged = _damage(run / "visibility.pt", how)
    with caplog.at_level(logging.WARNING, logger="lerf.model.visibility"):
        query.main([f"run={run}", f"out={tmp_path / 'damaged'}", *args])
    assert f"{run / 'visibility.pt'} is damaged" in caplog.text
    assert (run / "visibility.pt").read_bytes() == damaged  # a query never writes into the run
    # the grid built from the checkpoint is the one training stored: the same 3D answer
    ply = "red_mug/points.ply"
    assert (tmp_path / "damaged" / ply).read_bytes() == (tmp_path / "good" / ply).read_bytes()


FEATURE_CACHES = ("clip_pyramid_*.npy", "clip_pyramid_*.json", "dino_maps_*.npy", "dino_maps_*.json")


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("pattern", FEATURE_CACHES)
def test_damaged_feature_cache_is_rebuilt_with_a_warning(shared, lang_tiny, tmp_path, pattern, how, caplog):
    from lerf.data.scene import load_scene
    from lerf.train.supervision import build_supervision

    features = tmp_path / "features"
    shutil.copytree(shared / "features", features)
    (target,) = features.glob(f"*/{pattern}")
    original = target.read_bytes()
    _damage(target, how)
    cfg = to_typed(tiny_config(shared, f"encoder.cache_dir={features}"))
    with caplog.at_level(logging.WARNING, logger="lerf.encoders.cache"):
        build_supervision(cfg, load_scene(cfg.scene), torch.device("cpu"))  # what training opens first
    assert str(target) in caplog.text and "rebuilding" in caplog.text
    if target.suffix == ".npy":  # rebuilt to the same numbers
        assert np.array_equal(np.load(target), np.load(io.BytesIO(original)))
    else:
        assert json.loads(target.read_text())["key"] == json.loads(original)["key"]


SCENE_FILES = ("transforms.json", "labels.json", "depths/frame_00001.npy", "labels/frame_00001.json")


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name", SCENE_FILES)
def test_damaged_scene_file_stops_with_one_line_naming_it(shared, tmp_path, name, how, capsys):
    from lerf.data.scene import load_scene
    from lerf.evaluation.labels import load_label_dir

    shutil.copytree(shared / "scenes", tmp_path / "scenes")
    (root,) = [p for p in (tmp_path / "scenes").iterdir() if p.is_dir()]
    _damage(root / name, how)
    cfg = to_typed(tiny_config(tmp_path)).scene
    # query and evaluation open the scene without regenerating it; evaluation reads the label folder
    read = (lambda: load_label_dir(root / "labels")) if name.startswith("labels/") else (
        lambda: load_scene(cfg, generate=False))
    with pytest.raises(SystemExit) as exit_:
        run_cli(read)
    assert exit_.value.code == 2
    _one_line_error(capsys.readouterr().err, str(root / name))


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("record", ["config.yaml", "provenance.json"])
def test_damaged_run_record_is_read_by_nothing(shared, tmp_path, record, how):
    """config.yaml and provenance.json are records for people; query and resume use the config the
    checkpoint carries, and a resume writes its own records beside them (the damaged one is left)."""
    from lerf.query.run import load_run

    run = tmp_path / "run"
    _train(shared, run, "trainer.max_steps=2", "trainer.checkpoint_every=2")
    damaged = _damage(run / record, how)
    assert load_run(run, "cpu").cfg.trainer.max_steps == 2
    train(tiny_config(shared, f"resume={run}"), run, overrides=[f"resume={run}", "trainer.max_steps=3"])
    assert load_checkpoint(run).step == 3 and (run / record).read_bytes() == damaged
    assert "max_steps: 3" in (run / "config_resume_2.yaml").read_text()
    assert json.loads((run / "provenance_resume_2.json").read_text())


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_only_checkpoint_stops_with_one_line_naming_it(shared, tmp_path, how, capsys):
    from lerf.query.run import load_run

    run = tmp_path / "run"
    _train(shared, run, "trainer.max_steps=2", "trainer.checkpoint_every=2")
    (only,) = checkpoint_files(run)
    _damage(only, how)
    with pytest.raises(SystemExit) as exit_:
        run_cli(lambda: load_run(run, "cpu"))
    assert exit_.value.code == 2
    _one_line_error(capsys.readouterr().err, "no usable checkpoint", str(only))


# ------------------------------------------------------------------ 13. run directories (issue 27)

def test_bare_resume_of_a_finished_run_leaves_it_as_it_is(lang_tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(lang_tiny, run)
    before = _snapshot(run)
    done = subprocess.run([sys.executable, str(REPO / "train.py"), f"resume={run}"], cwd=tmp_path, env=ENV,
                          text=True, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # Hydra's log of the command is the one new file; every file of the run is untouched
    assert _snapshot(run, skip=("train.log",)) == before
    assert "nothing to train" in (run / "train.log").read_text()
    # a grid that training never finished writing is built (once) by a bare resume
    good = (run / "visibility.pt").read_bytes()
    _damage(run / "visibility.pt", "truncated")
    train(tiny_config(tmp_path, f"resume={run}"), run, overrides=[f"resume={run}"])
    assert (run / "visibility.pt").read_bytes() == good


def test_fresh_run_on_an_existing_run_is_refused_before_hydra_writes(shared, tmp_path):
    run = tmp_path / "run"
    _train(shared, run, "trainer.max_steps=2", "trainer.checkpoint_every=2")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("the run's own record\n")
    before = _snapshot(run)
    time.sleep(0.05)  # a rewrite within the clock's resolution would keep the mtime
    done = subprocess.run([sys.executable, str(REPO / "train.py"), *tiny_overrides(shared), *NO_LANG,
                           f"hydra.run.dir={run}"], cwd=tmp_path, env=ENV, text=True, capture_output=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    _one_line_error(done.stderr, f"{run} already holds a run", "Nothing was overwritten")
    assert _snapshot(run) == before  # .hydra/ included; no train.log either


def test_resume_of_a_missing_directory_creates_nothing(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "train.py"), f"resume={tmp_path / 'nope'}"], cwd=tmp_path,
                          env=ENV, text=True, capture_output=True, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    _one_line_error(done.stderr, f"run directory {tmp_path / 'nope'} not found")
    assert list(tmp_path.iterdir()) == []  # no directory, no train.log, no outputs/


# ----------------------------------------------------------------- 14. two queries at once (issue 27)

VIEWER_SAVE = """
import sys
from pathlib import Path
from lerf.viewer.backend import Backend, QueryInUseError
from lerf.viewer.camera import resize
backend = Backend(sys.argv[1], "cpu", chunk=4096)
cams = resize(backend.cameras, 0, backend.cameras.height)
geometry = backend.render(cams, "k", with_language=True)
try:
    print(backend.save([backend.query("red mug", cams, "k")], geometry, out_root=Path(sys.argv[2]))[0])
except QueryInUseError as err:
    print(f"refused: {err}")
"""


@pytest.mark.slow
def test_two_queries_into_one_prompt_folder_one_is_refused_or_both_complete(lang_tiny, tmp_path):
    out = tmp_path / "q"
    folder = out / "red_mug"
    cmd = [sys.executable, str(REPO / "query.py"), f"run={lang_tiny}", "prompt=red mug", f"out={out}",
           "device=cpu"]
    with open(tmp_path / "holder.err", "w") as err:
        holder = subprocess.Popen(cmd + ["views=all", "video=true", "video_frames=12"], cwd=tmp_path, env=ENV,
                                  stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.time() + 120
        while not (folder / ".query.lock.pid").is_file():
            assert holder.poll() is None and time.time() < deadline, (tmp_path / "holder.err").read_text()[-3000:]
            time.sleep(0.05)
        os.kill(holder.pid, signal.SIGSTOP)  # frozen while it writes the folder
        second = subprocess.run(cmd + ["views=0", "overwrite=true"], cwd=tmp_path, env=ENV, text=True,
                                capture_output=True, timeout=120)
        assert second.returncode == 2, second.stderr[-3000:]
        _one_line_error(second.stderr, f"{folder} is being written by pid {holder.pid}")
        viewer = _python(VIEWER_SAVE, str(lang_tiny), str(out))
        assert f"refused: {folder} is being written by pid {holder.pid}" in viewer.stdout, viewer.stderr[-3000:]
        os.kill(holder.pid, signal.SIGCONT)
        assert holder.wait(timeout=300) == 0, (tmp_path / "holder.err").read_text()[-3000:]
    finally:
        holder.kill()
        holder.wait()
    # the first answer is complete: every view in its summary, every file of every view
    summary = json.loads((folder / "summary.json").read_text())
    assert [s["view"] for s in summary] == [f"frame_{i:05d}" for i in range(1, 9)]
    for s in summary:
        for suffix in ("_relevancy.npy", "_relevancy.png", "_overlay.png", "_rgb.png", ".json"):
            assert (folder / f"{s['view']}{suffix}").is_file()
    assert not list(folder.glob("viewer_*"))  # the refused save wrote nothing
    # one after the other, both complete
    viewer = _python(VIEWER_SAVE, str(lang_tiny), str(out))
    assert viewer.returncode == 0 and Path(viewer.stdout.strip()).is_file(), viewer.stderr[-3000:]
    assert json.loads((folder / "summary.json").read_text()) == summary


def test_shape_checks_are_on():
    """tests/conftest.py's jaxtyping + beartype hook checks lerf's annotated shapes (no silent fallback)."""
    from jaxtyping import TypeCheckError

    from lerf.model.visibility import VisibilityGrid

    grid = VisibilityGrid(torch.zeros(4, 4, 4, dtype=torch.int32), 1)
    with pytest.raises(TypeCheckError, match="x_unit"):
        grid.visible(torch.zeros(5, 2))  # positions must be (n, 3)
