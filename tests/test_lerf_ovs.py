"""The lerf_ovs benchmark command on a generated data root with the released layout: COLMAP
scenes written by pycolmap from known poses, LabelMe-style labels with CRLF line ends."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lerf.evaluation.labels import LabelFormatError, load_label_dir, load_label_file
from tests.colmap_helpers import pinhole_rays, ring_frames, write_images, write_model

REPO = Path(__file__).resolve().parents[1]
W, H, F = 40, 30, 36.0  # PINHOLE fx = fy = F, principal point at the image centre
BALLS = {"red ball": ((0.35, 0.0, 0.3), 0.3, (220, 40, 40)), "blue ball": ((-0.35, 0.2, 0.25), 0.25, (40, 60, 220))}


def _render(frame) -> np.ndarray:
    """Two spheres on a checkered floor (z = 0), ray-cast through every pixel centre."""
    v, u = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
    origin, dirs = pinhole_rays(frame, F, F, W / 2, H / 2, u.ravel(), v.ravel())
    t_floor = np.where(dirs[:, 2] < 0, -origin[2] / np.minimum(dirs[:, 2], -1e-9), np.inf)
    hit = origin + t_floor[:, None] * dirs
    checker = ((np.floor(hit[:, 0] * 4) + np.floor(hit[:, 1] * 4)) % 2)[:, None]
    rgb = np.where(np.isfinite(t_floor)[:, None], 90 + 100 * checker, 200.0) * np.ones(3)
    depth = t_floor.copy()
    for centre, radius, colour in BALLS.values():
        oc = origin - np.asarray(centre)
        b = dirs @ oc
        disc = b * b - (oc @ oc - radius * radius)
        t = np.where(disc > 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
        near = t < depth
        rgb[near], depth[near] = colour, t[near]
    return rgb.reshape(H, W, 3).astype(np.uint8)


def _circle_label(frame, ball: str, category: str, iscrowd=0, note: str = "") -> dict:
    """A ball's outline as LangSplat's files hold it: a polygon with fractional vertices, its
    box, and the bookkeeping keys (group, area, layer, iscrowd, note) the readers ignore."""
    centre, radius, _ = BALLS[ball]
    c = frame.rot @ np.asarray(centre) + frame.t
    px = np.array([F * c[0] / c[2] + W / 2, F * c[1] / c[2] + H / 2])
    r_px = F * radius / c[2]
    angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    poly = np.clip(px + r_px * np.stack([np.cos(angles), np.sin(angles)], 1), 0, [W - 1, H - 1])
    (x1, y1), (x2, y2) = poly.min(0), poly.max(0)
    return {"category": category, "group": 1, "segmentation": np.round(poly, 3).tolist(),
            "area": float(np.pi * r_px ** 2), "layer": 2.0, "bbox": [float(x1), float(y1), float(x2), float(y2)],
            "iscrowd": iscrowd, "note": note}


def _write_label(path: Path, frame, objects: list[dict]) -> None:
    data = {"info": {"name": frame.name.replace(".png", ".jpg"), "width": W, "height": H, "depth": 3, "note": ""},
            "objects": objects}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json.dumps(data, indent=2).replace("\n", "\r\n").encode())  # the released files' CRLF


def make_lerf_ovs_root(root: Path, scenes=("ramen", "teatime"), views: int = 6, labelled=(2, 5)) -> Path:
    """<root>/<scene>/{images,sparse/0} (one scene binary, the next text) and <root>/label/<scene>/."""
    for s, name in enumerate(scenes):
        frames = ring_frames(views, radius=2.2, height=1.4)
        write_model(root / name / "sparse" / "0", {1: ("PINHOLE", [F, F, W / 2, H / 2], W, H)}, frames,
                    "bin" if s % 2 == 0 else "txt")
        write_images(root / name / "images", frames, W, H, pixels=[_render(f) for f in frames])
        for k in labelled:
            f = frames[k - 1]
            # three categories; 'ball' has two objects; iscrowd written as 0 and as false
            objects = [_circle_label(f, "red ball", "red ball"), _circle_label(f, "blue ball", "blue ball", False),
                       _circle_label(f, "red ball", "ball"), _circle_label(f, "blue ball", "ball", False, "second")]
            _write_label(root / "label" / name / f"frame_{k:05d}.json", f, objects)
    return root


def test_released_label_files_are_read_as_they_are(tmp_path):
    root = make_lerf_ovs_root(tmp_path, scenes=("ramen",), views=4, labelled=(2,))
    path = root / "label" / "ramen" / "frame_00002.json"
    assert b"\r\n" in path.read_bytes()
    frame = load_label_file(path)
    assert frame.frame_name == "frame_00002.jpg" and (frame.height, frame.width) == (H, W)
    assert sorted(frame.categories) == ["ball", "blue ball", "red ball"]
    ball, red, blue = (frame.categories[c] for c in ("ball", "red ball", "blue ball"))
    assert len(ball.boxes) == 2 and len(ball.polygons) == 2  # iscrowd false and 0 both read
    assert np.any(red.polygons[0] % 1 != 0)  # fractional vertices kept
    # the category's mask is the union of its objects' polygons
    np.testing.assert_array_equal(ball.mask(H, W), red.mask(H, W) | blue.mask(H, W))
    assert 0 < red.mask(H, W).sum() < H * W
    assert [f.frame_number for f in load_label_dir(path.parent)] == [2]


def _train_overrides(tmp_path: Path) -> str:
    """A seconds-long run of the real pipeline: small model, one pyramid level of a small
    random-weight OpenCLIP (the same code as ViT-B/16, other weights and size), reference DINO."""
    keys = ["model=demo", "trainer=smoke", "trainer.max_steps=8", "trainer.rays_per_batch=128",
            "trainer.num_threads=1", "trainer.eval_chunk=1024", "encoder.clip_model=ViT-S-32",
            "encoder.allow_random_weights=true", "encoder.dino=reference", "encoder.pyramid_levels=1",
            "encoder.pyramid_min_frac=0.5", "encoder.pyramid_max_frac=0.5", f"encoder.cache_dir={tmp_path / 'feat'}",
            "relevancy.visibility_min_views=2", "relevancy.num_scales=4", "model.language.hidden_dim=32",
            "model.language.bottleneck_dim=32"]
    return "train=[" + ",".join(keys) + "]"


def _command():
    """eval/lerf_ovs.py as a module (eval/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("eval_lerf_ovs", REPO / "eval" / "lerf_ovs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_lerf_ovs_command_trains_scores_and_writes_the_table(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    lerf_ovs = _command()

    root = make_lerf_ovs_root(tmp_path / "data")
    out = tmp_path / "bench"
    argv = [f"data_root={root}", "scenes=[ramen,teatime]", f"out={out}", "smooth_k=5", "chunk=2048",
            _train_overrides(tmp_path)]
    lerf_ovs.main(argv)
    summary = json.loads((out / "lerf_ovs.json").read_text())
    assert sorted(summary["scenes"]) == ["ramen", "teatime"] and not summary["all_scenes"]
    # 2 labelled frames x 3 categories per scene
    assert [summary["scenes"][s]["num_queries"] for s in ("ramen", "teatime")] == [6, 6]
    assert summary["query_weighted"]["num_queries"] == 12
    loc = [summary["scenes"][s]["localization"] for s in ("ramen", "teatime")]
    assert summary["mean_over_scenes"]["localization"] == pytest.approx(sum(loc) / 2)
    for scene in ("ramen", "teatime"):
        per_query = json.loads((out / scene / "localization.json").read_text())
        assert per_query["protocol"] == "lerf_ovs" and per_query["num_queries"] == 6
        assert {r["view"] for r in per_query["results"]} == {"frame_00002", "frame_00005"}
        assert (out / scene / "run" / "config.yaml").is_file()
    table = (out / "lerf_ovs.md").read_text()
    for text in ("mean over scenes", "query-weighted", "LERF (published)", "73.6", "84.3", "59.9", "86.4",
                 "Only 2 of the 4 scenes"):
        assert text in table
    # a second call reuses the trained runs (a run is never trained over) and scores a given run
    argv[1] = "scenes=[ramen]"
    lerf_ovs.main(argv + [f"runs.ramen={out / 'teatime' / 'run'}"])
    again = json.loads((out / "lerf_ovs.json").read_text())
    assert again["scenes"]["ramen"]["run"] == str((out / "teatime" / "run").resolve())
    assert "was trained on" in caplog.text  # teatime's run scored as ramen: said, not silent


def test_lerf_ovs_command_refuses_a_bad_data_root_in_one_line(tmp_path):
    root = make_lerf_ovs_root(tmp_path / "data", scenes=("ramen",), views=4, labelled=(2,))
    out = tmp_path / "o"
    cmd = [sys.executable, str(REPO / "eval" / "lerf_ovs.py"), f"data_root={root}", f"out={out}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)  # the four scenes by default
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "figurines" in done.stderr and "not found" in done.stderr
    command = _command()
    with pytest.raises(FileNotFoundError, match=r"runs.ramen=.*no checkpoint"):
        command.main([f"data_root={root}", f"out={out}", "scenes=[ramen]", f"runs.ramen={tmp_path / 'no_run'}"])
    label = root / "label" / "ramen" / "frame_00002.json"
    label.write_bytes(label.read_bytes().replace(b"frame_00002.jpg", b"frame_00009.jpg"))
    with pytest.raises(LabelFormatError, match="label for 'frame_00009.jpg' matches no frame"):
        command.main([f"data_root={root}", f"out={out}", "scenes=[ramen]"])
    assert not out.exists()  # nothing written before the data is known good


@pytest.mark.parametrize("model", ["nerfacto", "lite"])
def test_preset_reads_the_scene_and_labels_under_lerf_ovs_root(monkeypatch, model):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from lerf.config import register_configs, to_typed

    monkeypatch.setenv("LERF_OVS_ROOT", "/data/ovs")
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["scene=lerf_ovs", "scene.name=ramen", f"model={model}"])
    scene = to_typed(OmegaConf.to_container(cfg, resolve=True)).scene
    assert (scene.kind, scene.path, scene.labels_dir) == ("colmap", "/data/ovs/ramen", "/data/ovs/label/ramen")
    assert scene.eval_every == 0 and not scene.bounded  # LangSplat trains on every frame; unbounded capture
    assert (cfg.encoder.clip, cfg.encoder.dino, cfg.model.name) == ("openclip", "dino", model)


def test_the_table_reports_both_averages_and_says_which_is_which(tmp_path):
    """teatime: 3 queries, 2 hits; ramen: 1 query, 0 hits -> mean over scenes (2/3 + 0) / 2 = 1/3,
    query-weighted 2/4. IoUs 0.5, 1.0, undefined (0/0) and 0.2 -> scene mIoUs 0.75 and 0.2,
    mean over scenes 0.475, query-weighted (0.5 + 1 + 0.2) / 3."""
    from lerf.evaluation.lerf_ovs import benchmark_summary, format_benchmark, write_benchmark
    from lerf.evaluation.localization import LocalizationResult, summarize_localization
    from lerf.evaluation.segmentation import SegmentationResult, summarize_segmentation

    def reports(scene, hits, ious):
        loc = summarize_localization([LocalizationResult(f"q{k}", "v", h, 0, 0, 0, scene) for k, h in enumerate(hits)])
        seg = summarize_segmentation([SegmentationResult(f"q{k}", "v", x, 0, scene) for k, x in enumerate(ious)])
        return json.loads(json.dumps(loc)), json.loads(json.dumps(seg))  # as written to disk (NaN -> null)

    rep = {"teatime": reports("teatime", [True, True, False], [0.5, 1.0, float("nan")]),
           "ramen": reports("ramen", [False], [0.2])}
    summary = benchmark_summary(rep, {"teatime": "/r/t", "ramen": "/r/r"}, {"smooth_k": 30, "threshold": 0.4,
                                                                             "levels": "chosen_scale"})
    assert summary["mean_over_scenes"]["localization"] == pytest.approx(1 / 3)
    assert summary["query_weighted"]["localization"] == pytest.approx(0.5)
    assert summary["mean_over_scenes"]["miou"] == pytest.approx(0.475)
    assert summary["query_weighted"]["miou"] == pytest.approx(1.7 / 3)
    assert summary["scenes"]["teatime"]["num_undefined_iou"] == 1
    table = format_benchmark(summary)
    assert "| this run | 66.7 | 0.0 | 33.3 | 50.0 |" in table
    assert "| this run | 75.0 | 20.0 | 47.5 | 56.7 |" in table
    assert "| LangSplatV2 (published) | - | - | 86.4 | 84.1 |" in table
    assert "| LERF (published) | - | - | 37.4 | - |" in table
    md, js = write_benchmark(summary, tmp_path)
    assert json.loads(js.read_text())["query_weighted"]["num_queries"] == 4 and md.read_text() == table
