"""The path every user takes, end to end at toy size: a real-looking capture (no depth, ids or
labels; per-frame intrinsics, OPENCV distortion, poses in centimetres), OpenCLIP ViT-B/16 and DINO
ViT-S/8 (the real loading code, random weights through encoder.allow_random_weights),
model=nerfacto and model=lite (appearance and pose refinement on), trained through train.py, then
query.py, eval/render.py and the viewer's backend.

Every check runs on the capture in both input formats (the `kind` fixture): nerfstudio
(transforms.json; nerfacto through scene=custom, lite through scene=teacup and LERF_DATA_ROOT) and
COLMAP (images/ + sparse/0 written by pycolmap, one OPENCV camera per image; nerfacto through
scene=colmap, lite through scene=lerf_ovs scene.name=teatime and LERF_OVS_ROOT).

Only the weights and the sizes differ from a real run: 6 frames of 48 x 64, a 2-level pyramid
(50 % and 100 % of the height, stride = crop side) fed to CLIP at 32 px (encoder.clip_input_px),
DINO at a 64 px short side (encoder.dino_load_size), small hash grids and a few steps.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from lerf.encoders._compat import import_open_clip, import_timm  # noqa: E402

try:  # the real encoders' packages (open_clip's import needs lerf's torchvision shim)
    import_open_clip(), import_timm()
except ImportError as err:  # pragma: no cover - installed by setup.py's extras
    pytest.skip(f"real encoders unavailable: {err}", allow_module_level=True)

from tests.colmap_helpers import write_colmap_capture  # noqa: E402
from tests.real_capture import METRES_PER_UNIT, write_capture  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
HEIGHT, WIDTH, FRAMES = 48, 64, 6
SMALL = [
    "encoder=openclip", "encoder.allow_random_weights=true", "encoder.clip_input_px=32", "encoder.dino_load_size=64",
    "encoder.pyramid_min_frac=0.5", "encoder.pyramid_max_frac=1.0", "encoder.pyramid_levels=2",
    "encoder.pyramid_stride_scaler=1.0",
    f"scene.metres_per_unit={METRES_PER_UNIT}", "scene.eval_every=3",
    "model.appearance=true", "model.pose_refinement=true",
    "model.grid.log2_hashmap_size=14", "model.language.hidden_dim=64", "model.language.bottleneck_dim=64",
    "model.language.grids=[{num_levels:4,features_per_level:2,log2_hashmap_size:12,base_resolution:8,"
    "max_resolution:64}]",
    "trainer.max_steps=3", "trainer.rays_per_batch=256", "trainer.checkpoint_every=3", "trainer.log_every=1",
    "trainer.image_every=0", "trainer.progress=false", "trainer.num_threads=1", "trainer.eval_chunk=1024",
    "relevancy.num_scales=6", "relevancy.visibility_min_views=2", "relevancy.visibility_resolution=16",
    "relevancy.visibility_max_px=32",
]


def _run(args: list[str], env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env or ENV, text=True, capture_output=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


# Per input format: the writer, the preset that takes scene.path, and the preset that reads the
# capture as teatime/ under a data root (with that root's environment variable).
WRITERS = {"nerfstudio": write_capture, "colmap": write_colmap_capture}
PATH_PRESET = {"nerfstudio": "scene=custom", "colmap": "scene=colmap"}
ROOT_PRESET = {"nerfstudio": (["scene=teacup"], "LERF_DATA_ROOT"),
               "colmap": (["scene=lerf_ovs", "scene.name=teatime"], "LERF_OVS_ROOT")}


@pytest.fixture(scope="module", params=sorted(WRITERS))
def kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory) -> dict[str, Path]:
    """Per kind, the data root holding the generated capture as teatime/ (what scene=teacup or
    scene=lerf_ovs scene.name=teatime reads). Written once for the module, whatever order pytest
    gives the (kind, model) pairs in, so both models' runs of a kind share one feature cache."""
    roots = {kind: tmp_path_factory.mktemp(f"real_{kind}") / "data" for kind in WRITERS}
    for kind, root in roots.items():
        WRITERS[kind](root / "teatime", num_frames=FRAMES, height=HEIGHT, width=WIDTH)
    return roots


@pytest.fixture(scope="module")
def data_root(kind, data_roots) -> Path:
    return data_roots[kind]


@pytest.fixture(scope="module", params=["nerfacto", "lite"])
def real_run(request, kind, data_root) -> tuple[str, Path, subprocess.CompletedProcess]:
    """One trained run per model: nerfacto through the path preset (scene.path=...), lite through
    the data-root preset (both share the feature cache: the second run loads it)."""
    model = request.param
    run_dir = data_root.parent / f"run_{model}"
    features = data_root.parent / "features"
    if model == "nerfacto":
        scene, env = [PATH_PRESET[kind], f"scene.path={data_root / 'teatime'}"], ENV
    else:
        scene, root_var = ROOT_PRESET[kind]
        env = {**ENV, root_var: str(data_root)}
    done = _run(["train.py", f"model={model}", *scene, *SMALL, f"encoder.cache_dir={features}",
                 f"hydra.run.dir={run_dir}"], env)
    return model, run_dir, done


def test_training_writes_a_real_run(real_run, kind, data_root):
    from lerf.model.checkpoint import load_checkpoint
    from lerf.data.scene import load_scene

    model, run_dir, done = real_run
    state = load_checkpoint(run_dir)
    cfg = state.config
    assert state.step == 3 and cfg.model.name == model
    assert cfg.model.appearance and cfg.model.pose_refinement
    assert (cfg.encoder.clip, cfg.encoder.dino) == ("openclip", "dino") and cfg.scene.kind == kind
    assert Path(cfg.scene.path) == (data_root / "teatime").resolve()
    # The poses are in centimetres: one metre is 100 pose units, so 100x the normalised units.
    scene = load_scene(cfg.scene, generate=False)
    assert state.geometry.scale_factor == pytest.approx(scene.scale_factor / METRES_PER_UNIT)
    assert scene.object_ids is None and scene.demo is None and scene.labels is None
    assert torch.count_nonzero(scene.cameras.distortion) == 4 * FRAMES
    assert len(set(scene.cameras.fx_px.tolist())) == FRAMES  # per-frame intrinsics survived
    assert state.dims == {"clip": 512, "dino": 384}
    result = json.loads((run_dir / "eval.json").read_text())
    assert np.isfinite(result["psnr"]) and result["num_views"] == 2
    assert (run_dir / "visibility.pt").is_file()
    # The cost is said before the run, and the caches on disk have exactly the announced sizes.
    log = done.stdout + done.stderr
    assert "feature caches for 6 images" in log and "host RAM" in log


def test_cache_sizes_match_the_announced_cost(real_run, data_root):
    from lerf.encoders.cache import npy_bytes
    from lerf.encoders.dino import resized_hw
    from lerf.train.cost import cache_bytes, gb

    _, run_dir, done = real_run
    caches = list((data_root.parent / "features").glob("teatime-*/*.npy"))
    sizes = {("clip" if p.name.startswith("clip_pyramid") else "dino"): p.stat().st_size for p in caches}
    rows, cols = (s // 8 for s in resized_hw(HEIGHT, WIDTH, 64, 8))
    clip, dino = cache_bytes(FRAMES, HEIGHT, WIDTH, [0.5, 1.0], 1.0, 512, (FRAMES, rows, cols, 384))
    assert sizes == {"clip": clip, "dino": dino}
    # 50 %: 24 px crops every 24 px -> 2 x 3; 100 %: 48 px -> 1 x 2; 8 crops per image, 512 fp16 each
    assert clip == npy_bytes((FRAMES * 8, 512))
    announced = f"CLIP pyramid {gb(clip)}, DINO {gb(dino)}"
    assert announced in done.stdout + done.stderr


def test_query_writes_png_npy_and_json(real_run, tmp_path):
    _, run_dir, _ = real_run
    _run(["query.py", f"run={run_dir}", "prompt=[mug, teapot]", "views=0", f"out={tmp_path}", "device=cpu"])
    for prompt in ("mug", "teapot"):
        out = tmp_path / prompt
        relevancy = np.load(out / "frame_00000_relevancy.npy")
        assert relevancy.shape == (HEIGHT, WIDTH) and np.isfinite(relevancy).all()
        assert 0.0 <= relevancy.min() and relevancy.max() <= 1.0
        for png in ("relevancy", "overlay", "rgb"):
            assert iio.imread(out / f"frame_00000_{png}.png").shape[:2] == (HEIGHT, WIDTH)
        summary = json.loads((out / "frame_00000.json").read_text())
        assert summary["prompt"] == prompt and summary["step"] == 3
        assert len(summary["max_relevancy_per_scale"]) == 6
        assert [s["view"] for s in json.loads((out / "summary.json").read_text())] == ["frame_00000"]


def test_eval_render_scores_the_held_out_views(real_run, tmp_path):
    _, run_dir, _ = real_run
    _run(["eval/render.py", f"run={run_dir}", f"out={tmp_path}", "device=cpu"])
    result = json.loads((tmp_path / "eval_render.json").read_text())
    assert result["num_views"] == 2 and np.isfinite(result["psnr"]) and result["steps"] == 3
    assert len(list((tmp_path / "eval_render").glob("*.png"))) >= 2


def test_viewer_backend_renders_a_prompt(real_run):
    pytest.importorskip("viser")
    from lerf.viewer.backend import Backend
    from lerf.viewer.camera import resize

    _, run_dir, _ = real_run
    backend = Backend(run_dir, "cpu", chunk=4096)
    cams = resize(backend.cameras, 1, HEIGHT)
    geometry = backend.render(cams, "view", with_language=True)
    assert geometry.rgb.shape == (HEIGHT, WIDTH, 3) and torch.isfinite(geometry.depth_m).all()
    result = backend.query("mug", cams, "view")
    assert result.relevancy.shape == (HEIGHT, WIDTH) and torch.isfinite(result.relevancy).all()
    assert result.scale_m in backend.scales_m


def test_a_full_disk_is_refused_before_anything_is_written(kind, data_root, tmp_path, monkeypatch):
    """The disk check runs after the encoders are built and before the first cache or run file;
    the free space is lerf's own reading (lerf.train.cost.free_disk_bytes), replaced here."""
    from hydra import compose, initialize_config_dir

    from lerf.config import register_configs
    from lerf.train import cost
    from lerf.train.trainer import train

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["model=lite", PATH_PRESET[kind], f"scene.path={data_root / 'teatime'}",
                                          *SMALL, f"encoder.cache_dir={tmp_path / 'features'}"])
    # A killed build's temporary in the scene's cache folder: removed before the space is counted.
    from lerf.encoders.cache import scene_cache_dir
    from tests.test_run_cost import dead_pid, temporary

    folder = scene_cache_dir(tmp_path / "features", data_root / "teatime")
    folder.mkdir(parents=True)
    stale = temporary(folder, "clip_pyramid_killed", dead_pid(), age_s=3600)
    monkeypatch.setattr(cost, "free_disk_bytes", lambda folder: 1000)
    with pytest.raises(cost.ResourceError, match="not enough disk for the feature caches"):
        train(cfg, tmp_path / "run")
    assert not stale.exists()
    assert not list(tmp_path.rglob("*.npy")) and not list(tmp_path.rglob("*.json"))
    assert not (tmp_path / "run" / "config.yaml").exists() and not (tmp_path / "run" / "checkpoints").exists()
