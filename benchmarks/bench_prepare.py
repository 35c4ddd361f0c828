"""prepare.py on demo renders with known cameras: pose accuracy, registration, CPU time, and
(with --train-steps) NeRF PSNR on the prepared scene vs the same images with the true poses.

    python benchmarks/bench_prepare.py --work /tmp/bench_prepare                      # 32 views, 512 px
    python benchmarks/bench_prepare.py --work /tmp/bench_prepare --train-steps 2000

Cases (each is the whole `python prepare.py ...` command, timed):
  photos        the speckled demo (lerf.prepare.synthetic) as PNG photos, exhaustive matching
  video         the same frames as an H.264 MP4, frames= all, sequential matching (the video path)
  stock_table   the stock demo texture as PNG photos: what happens without texture
  large         (only when named in --cases) 8 speckled views of 1600 px, the default max_side: CPU time
Pose errors: the recovered cameras aligned to the truth by a similarity (Umeyama, fitted to the
camera positions), then per camera the rotation angle (deg) and the position error (cm).
Training (--train-steps): NeRF only (model.language.enabled=false), model=demo, uniform rays,
scene.downscale=2, the same background colour, once on the prepared `photos` scene with the
truth's metric scale given (scene.metres_per_unit = the alignment's scale) and once on the
rendered images with their true poses; PSNR over each scene's held-out views (every 8th frame).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lerf, not an installed one
from common import machine, write_json  # noqa: E402

from lerf.data.atomic import write_json as write_json_atomic  # noqa: E402

from lerf.prepare.synthetic import BACKGROUND_RGB  # noqa: E402
from lerf.prepare.align import prepared_vs_truth  # noqa: E402
from lerf.prepare.synthetic import render_capture  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def rendered(work: Path, name: str, views: int, size: int, speckle: bool, supersample: int = 2) -> Path:
    out = work / name
    if not (out / "transforms.json").is_file():
        t0 = time.perf_counter()
        render_capture(out, views, size, supersample=supersample, speckle=speckle, progress=True)
        print(f"rendered {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def as_video(truth: Path, path: Path) -> Path:
    import imageio

    if not path.is_file():
        with imageio.get_writer(path, fps=10, quality=9, macro_block_size=16) as writer:
            for frame in sorted((truth / "images").glob("*.png")):
                writer.append_data(imageio.v3.imread(frame))
    return path


def run_prepare(source: Path, out: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    cmd = [sys.executable, str(REPO / "prepare.py"), f"input={source}", f"out={out}", "overwrite=true", *args]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=ENV, text=True, capture_output=True)
    return time.perf_counter() - t0, done


def case(name: str, source: Path, truth: Path, out: Path, *args: str) -> dict:
    load = os.getloadavg()[0]
    wall, done = run_prepare(source, out, *args)
    # The machine is shared: the load average says how much of its 2 cores this run had.
    row = {"case": name, "command": f"python prepare.py input={source} out={out} " + " ".join(args),
           "wall_s": round(wall, 1), "returncode": done.returncode,
           "load_avg_1m": [round(load, 1), round(os.getloadavg()[0], 1)], "cpus": os.cpu_count()}
    if done.returncode != 0:
        row["error"] = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        return row
    report = json.loads((out / "prepare.json").read_text())
    errors, names = prepared_vs_truth(out, truth)
    row.update({k: report[k] for k in ("frames", "registered", "mean_reprojection_error_px", "mean_track_length",
                                       "points3d", "seconds", "warnings")})
    row.update({
        "compared": len(names),
        "rotation_deg_median": round(float(np.median(errors.rotation_deg)), 3),
        "rotation_deg_max": round(float(errors.rotation_deg.max()), 3),
        "position_cm_median": round(100 * float(np.median(errors.position_m)), 3),
        "position_cm_max": round(100 * float(errors.position_m.max()), 3),
        # metres per unit of the written (estimated-metre) poses, from the alignment to the truth
        "true_metres_per_written_unit": round(errors.alignment.scale, 4),
    })
    print(json.dumps(row), flush=True)
    return row


def train_psnr(scene: Path, run_dir: Path, steps: int, *extra: str) -> dict:
    bg = "[" + ",".join(f"{c:g}" for c in BACKGROUND_RGB) + "]"
    cmd = [sys.executable, str(REPO / "train.py"), "scene=custom", f"scene.path={scene}", "scene.downscale=2",
           f"scene.background_color={bg}", "model=demo", "model.language.enabled=false", "trainer=demo",
           "trainer.ray_sampling=uniform", f"trainer.max_steps={steps}", "trainer.num_threads=2",
           "trainer.image_every=0", f"hydra.run.dir={run_dir}", *extra]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=ENV, text=True, capture_output=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    result = json.loads((run_dir / "eval.json").read_text())
    return {"command": " ".join(cmd[1:]), "psnr": round(result["psnr"], 2), "ssim": round(result["ssim"], 4),
            "views": result["num_views"], "wall_s": round(time.perf_counter() - t0, 1)}


def speckled_demo(work: Path, views: int, size: int) -> Path:
    """The full demo scene (depths, ids, labels) rendered with the speckled table."""
    from unittest import mock

    from lerf.prepare.synthetic import generate_demo_scene
    from lerf.prepare.synthetic import speckled_scene

    out = work / f"demo_speckled_{views}v_{size}"
    if not (out / "transforms.json").is_file():
        with mock.patch("lerf.demo.scene.build_demo_scene", speckled_scene):
            generate_demo_scene(out, seed=0, num_views=views, width=size, height=size, overwrite=True, progress=True)
    return out


def sfm_posed_copy(demo: Path, prepared: Path, out: Path) -> dict:
    """The demo scene with SfM's cameras: each frame's pose from prepare's raw COLMAP model (before
    undistortion, on the original images), moved into the demo's metric frame by the Umeyama
    similarity, and SfM's camera (SIMPLE_RADIAL f, cx, cy, k as OPENCV k1). Held-out frames get
    SfM poses too: that is all a real capture would have."""
    import pycolmap

    from lerf.prepare.align import pose_errors
    from lerf.prepare.write import c2w_opengl

    models = [pycolmap.Reconstruction(d) for d in sorted((prepared / "colmap" / "sparse").iterdir())]
    model = max(models, key=lambda m: m.num_reg_images())
    by_name = {im.name: im for im in (model.images[i] for i in model.reg_image_ids())}
    meta = json.loads((demo / "transforms.json").read_text())
    names = [Path(f["file_path"]).name for f in meta["frames"]]
    if set(names) - set(by_name):
        raise SystemExit(f"SfM left frames unregistered: {sorted(set(names) - set(by_name))}")
    est = np.stack([c2w_opengl(by_name[n].cam_from_world().matrix()) for n in names])
    ref = np.stack([np.asarray(f["transform_matrix"]) for f in meta["frames"]])
    errors = pose_errors(est, ref)
    sim = errors.alignment
    out.mkdir(parents=True, exist_ok=True)
    for entry in demo.iterdir():
        if entry.name != "transforms.json" and not (out / entry.name).exists():
            (out / entry.name).symlink_to(entry)
    for frame, c2w in zip(meta["frames"], est):
        pose = np.eye(4)
        pose[:3, :3] = sim.rotation @ c2w[:3, :3]
        pose[:3, 3] = sim.apply(c2w[None, :3, 3])[0]
        frame["transform_matrix"] = pose.tolist()
    cam = model.cameras[next(iter(model.cameras))]
    f, cx, cy, k = (float(v) for v in cam.params)
    meta.update({"camera_model": "OPENCV", "fl_x": f, "fl_y": f, "cx": cx, "cy": cy, "k1": k, "k2": 0.0, "p1": 0.0,
                 "p2": 0.0})
    write_json_atomic(out / "transforms.json", meta)
    return {"rotation_deg_median": round(float(np.median(errors.rotation_deg)), 3),
            "position_cm_median": round(100 * float(np.median(errors.position_m)), 3),
            "focal_px": round(f, 2), "true_focal_px": round(float(ref_focal(demo)), 2)}


def ref_focal(demo: Path) -> float:
    return float(json.loads((demo / "transforms.json").read_text())["fl_x"])


def train_demo(scene: Path, run_dir: Path, steps: int) -> dict:
    """The demo preset (reference encoders, language field, localization) on a scene folder."""
    cmd = [sys.executable, str(REPO / "train.py"), "scene=demo", "scene.kind=nerfstudio", f"scene.path={scene}",
           f"trainer.max_steps={steps}", "trainer.num_threads=2", "trainer.image_every=0",
           f"encoder.cache_dir={run_dir.parent / (run_dir.name + '_features')}", f"hydra.run.dir={run_dir}"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=ENV, text=True, capture_output=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    r = json.loads((run_dir / "eval.json").read_text())
    return {"command": " ".join(cmd[1:]), "psnr": round(r["psnr"], 2), "localization": r.get("localization"),
            "localization_per_level": r.get("localization_per_level"), "miou": r.get("miou"),
            "wall_s": round(time.perf_counter() - t0, 1)}


def localization(work: Path, steps: int) -> dict:
    """Demo preset on the speckled demo (48 views, 256 px): true poses vs SfM poses."""
    demo = speckled_demo(work, 48, 256)
    wall, done = run_prepare(demo / "images", work / "prepared_demo", "frame_format=png")
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1]}
    sfm_scene = work / "demo_speckled_sfm_poses"
    poses = sfm_posed_copy(demo, work / "prepared_demo", sfm_scene)
    print(json.dumps(poses), flush=True)
    return {"steps": steps, "prepare_wall_s": round(wall, 1), "sfm_poses": poses,
            "true_poses": train_demo(demo, work / "run_demo_truth", steps),
            "sfm_posed": train_demo(sfm_scene, work / "run_demo_sfm", steps)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--views", type=int, default=32)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--train-steps", type=int, default=0)
    p.add_argument("--cases", default="photos,video,stock_table")
    p.add_argument("--localization-steps", type=int, default=0, help="demo preset runs: true vs SfM poses")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "prepare_cpu.json"))
    p.add_argument("--skip-cases", action="store_true", help="only the --localization-steps runs")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    truth = rendered(args.work, f"truth_{args.views}v_{args.size}", args.views, args.size, speckle=True)
    cases = [] if args.skip_cases else args.cases.split(",")
    rows = []
    if "photos" in cases:
        rows.append(case("photos", truth / "images", truth, args.work / "prepared_photos", "frame_format=png"))
    if "video" in cases:
        video = as_video(truth, args.work / "capture.mp4")
        rows.append(case("video", video, truth, args.work / "prepared_video", f"frames={args.views}"))
    if "stock_table" in cases:
        stock = rendered(args.work, f"stock_{args.views}v_{args.size}", args.views, args.size, speckle=False)
        rows.append(case("stock_table", stock / "images", stock, args.work / "prepared_stock", "frame_format=png"))
    if "large" in cases:  # CPU time at the default max_side: 8 views of 1600 px
        large = rendered(args.work, "truth_8v_1600", 8, 1600, speckle=True, supersample=1)
        rows.append(case("large", large / "images", large, args.work / "prepared_large"))
    result = {"machine": machine(), "views": args.views, "size": args.size, "cases": rows}
    if args.localization_steps:
        result["localization"] = localization(args.work, args.localization_steps)
    photos = next((r for r in rows if r["case"] == "photos" and r.get("returncode") == 0), None)
    if args.train_steps and photos:
        result["training"] = {
            "steps": args.train_steps,
            "prepared_poses": train_psnr(args.work / "prepared_photos", args.work / "run_prepared", args.train_steps,
                                         f"scene.metres_per_unit={photos['true_metres_per_written_unit']}"),
            "true_poses": train_psnr(truth, args.work / "run_truth", args.train_steps)}
    write_json(result, args.out)


if __name__ == "__main__":
    main()
