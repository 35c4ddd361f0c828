"""What a real run's feature caches cost, measured on a generated LERF-sized capture, beside the
estimate train.py logs before it starts (lerf/train/cost.py).

    python benchmarks/bench_run_cost.py [--frames 200] [--out benchmarks/results/run_cost.json]

1. Writes a nerfstudio capture of `--frames` JPEGs at 994 x 738 (the size of the LERF captures;
   tests/real_capture.py: per-frame intrinsics, OPENCV distortion, no depth or ids).
2. Builds the CLIP pyramid (LERF's 7 levels, 5-50 %) and the DINO cache through the project's own
   cache code (lerf.encoders.cache) with STAND-IN encoders of the real output sizes: 512-d crop
   embeddings (a fixed projection of the crop's mean colour) and DINO ViT-S/8's grid at a 500 px
   short side with 384-d cells (a fixed projection of 8 x 8 pixel means). Sizes, I/O and the
   pyramid's crop-and-resize work are the real ones; the networks' time is not (item 4 has it).
3. Loads the scene and both caches in a fresh process, the way training does, and records its
   peak RSS (/proc/self/status VmHWM).
4. OpenCLIP ViT-B/16 and DINO ViT-S/8 with random weights (the real networks, so the real time):
   crops/s for a few 224 px crops, seconds per image for DINO at the 500 px short side.

`--frames` below 200 measures that many and also reports the sizes scaled linearly to 200 frames
(every figure here is per image, so the scaling is exact for sizes and linear for times).
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import machine, write_json  # noqa: E402
from lerf.config import ModelConfig, SceneConfig  # noqa: E402
from lerf.data.scene import load_scene  # noqa: E402
from lerf.encoders.base import unit_normalise  # noqa: E402
from lerf.encoders.cache import load_or_build_clip_pyramid, load_or_build_dino_maps  # noqa: E402
from lerf.encoders.dino import LOAD_SIZE, resized_hw  # noqa: E402
from lerf.encoders.pyramid import PyramidInputs, linspace_fracs, pyramid_grids  # noqa: E402
from lerf.train.cost import estimate_run_cost  # noqa: E402

LERF_HW = (738, 994)  # the LERF captures' image size (height, width)
CLIP_DIM, DINO_DIM, DINO_PATCH = 512, 384, 8  # ViT-B/16's embedding, ViT-S/8's width and patch


class StandInClip:
    """512-d unit vectors from the crop's mean colour: the real pyramid work (crop, resize to
    224 px, batch, write fp16) without the network."""
    name, embed_dim, input_px, device = "standin_clip_512", CLIP_DIM, 224, torch.device("cpu")

    def __init__(self):
        self.proj = torch.randn(3, CLIP_DIM, generator=torch.Generator().manual_seed(0))

    def cache_key(self) -> dict:
        return {"encoder": self.name}

    def encode_crops(self, rgb, ids=None):
        return unit_normalise(rgb.mean(dim=(2, 3)) @ self.proj)

    def encode_text(self, texts):
        raise NotImplementedError


class StandInDino:
    """DINO ViT-S/8's grid (short side 500 px, 8 px patches) of 384-d cells: a fixed projection
    of each patch's mean colour."""
    name, feature_dim, device = "standin_dino_384", DINO_DIM, torch.device("cpu")

    def __init__(self):
        self.proj = torch.randn(3, DINO_DIM, generator=torch.Generator().manual_seed(1))

    def cache_key(self) -> dict:
        return {"encoder": self.name}

    def grid_hw(self, height: int, width: int) -> tuple[int, int]:
        h, w = resized_hw(height, width, LOAD_SIZE, DINO_PATCH)
        return h // DINO_PATCH, w // DINO_PATCH

    def stride_px(self, height: int, width: int) -> tuple[float, float]:
        gh, gw = self.grid_hw(height, width)
        return height / gh, width / gw

    def encode_dense(self, rgb, ids=None):
        gh, gw = self.grid_hw(*rgb.shape[-2:])
        pooled = torch.nn.functional.adaptive_avg_pool2d(rgb, (gh, gw))  # (n, 3, gh, gw)
        return pooled.permute(0, 2, 3, 1) @ self.proj


def standin_pyramid(images: torch.Tensor) -> PyramidInputs:
    """The stand-in CLIP's pyramid of `images`: LERF's 7 levels (§3.1)."""
    return PyramidInputs(images, None, StandInClip(), linspace_fracs())


def scene_config(capture: Path) -> SceneConfig:
    return SceneConfig(name="bench", kind="nerfstudio", path=str(capture), eval_every=0)


def peak_rss_mb() -> float:
    """This process's peak RSS: /proc/self/status VmHWM (Linux; it starts afresh at exec, while
    getrusage's ru_maxrss carries the parent's peak into a child), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def load_phase(capture: Path, cache_dir: Path) -> dict:
    """Load the scene and both caches as training does; report the peak RSS."""
    rss_start = peak_rss_mb()  # Python, torch and lerf imported, nothing loaded
    t0 = time.perf_counter()
    scene = load_scene(scene_config(capture))
    t_images = time.perf_counter() - t0
    rss_images = peak_rss_mb()
    load_or_build_clip_pyramid(cache_dir, standin_pyramid(scene.images), progress=False)
    load_or_build_dino_maps(cache_dir, scene.images, None, StandInDino(), progress=False)
    return {"rss_before_loading_mb": round(rss_start, 1), "load_images_s": round(t_images, 2), "peak_rss_after_images_mb": round(rss_images, 1),
            "load_all_s": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}


def build_phase(capture: Path, cache_dir: Path) -> dict:
    scene = load_scene(scene_config(capture))
    n = scene.images.shape[0]
    t0 = time.perf_counter()
    load_or_build_clip_pyramid(cache_dir, standin_pyramid(scene.images), batch_size=64, progress=False)
    t_clip = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_or_build_dino_maps(cache_dir, scene.images, None, StandInDino(), progress=False)
    t_dino = time.perf_counter() - t0
    return {"clip_build_s_per_image": round(t_clip / n, 3), "dino_build_s_per_image": round(t_dino / n, 3),
            "peak_rss_build_mb": round(peak_rss_mb(), 1)}


def real_network_speed(crops: int = 8) -> dict:
    """The real networks with random weights: what the stand-ins leave out."""
    from lerf.encoders.dino import DinoEncoder
    from lerf.encoders.openclip import OpenClipEncoder

    clip = OpenClipEncoder(allow_random_weights=True)
    batch = torch.rand(crops, 3, clip.input_px, clip.input_px)
    clip.encode_crops(batch[:1])  # warm-up
    t0 = time.perf_counter()
    clip.encode_crops(batch)
    crops_per_s = crops / (time.perf_counter() - t0)
    dino = DinoEncoder(allow_random_weights=True)
    image = torch.rand(1, 3, *LERF_HW)
    dino.encode_dense(image[:, :, :64, :64])  # warm-up
    t0 = time.perf_counter()
    dino.encode_dense(image)
    return {"openclip_random_crops_per_s": round(crops_per_s, 2), "openclip_crops_timed": crops,
            "dino_random_s_per_image": round(time.perf_counter() - t0, 2)}


def activation_phase(model_name: str, rays: list[int]) -> dict:
    """Peak RSS of one forward + backward of the `model_name` preset on the CPU (torch hash grid)
    at growing batches: the increase per ray is what a batch's activations take, to set beside
    lerf.train.cost.activation_bytes."""
    from hydra import compose, initialize_config_dir

    from lerf.config import register_configs, to_typed
    from lerf.train.cost import activation_bytes, bare_model

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = to_typed(compose("train", overrides=[f"model={model_name}", "scene=teacup"]))
    model = bare_model(cfg, CLIP_DIM, DINO_DIM)
    gen = torch.Generator().manual_seed(0)
    peaks = []
    for r in rays:
        origins = torch.zeros(r, 3)
        dirs = torch.nn.functional.normalize(torch.randn(r, 3, generator=gen), dim=-1)
        out = model(origins, dirs, step=0, jitter=True, generator=gen, frame_idx=torch.zeros(r, dtype=torch.long))
        pos, w, _ = model.language_samples(out, cfg.model.language.samples_per_ray)
        pred = model.render_language(pos, w, torch.full_like(w, 0.2))
        loss = out["rgb"].sum() + sum(p.sum() for p in pred.values()) + sum(x.sum() for x in out["prop_weights"])
        loss.backward()
        del out, pred, loss
        peaks.append(peak_rss_mb())
    # The first batch also allocates the gradients; the slope after it is the activations' share.
    first = 1 if len(rays) > 2 else 0
    per_ray = (peaks[-1] - peaks[first]) * 2**20 / (rays[-1] - rays[first])
    params = sum(p.numel() for p in model.parameters())
    return {"model": model_name, "params": params, "rays": rays, "peak_rss_mb": peaks,
            "measured_activation_bytes_per_ray": round(per_ray),
            "estimated_activation_bytes_per_ray": round(activation_bytes(cfg.model, 1000, CLIP_DIM, DINO_DIM) / 1000)}


def sizes_against_estimate(cache_dir: Path, n: int) -> dict:
    """The cache files' sizes per image, beside lerf.train.cost's estimate for the same grid."""
    result = {}
    clip_file = next(cache_dir.glob("clip_pyramid_*.npy"))
    dino_file = next(cache_dir.glob("dino_maps_*.npy"))
    crops = sum(lv.cells_per_image for lv in pyramid_grids(*LERF_HW, linspace_fracs(), 0.5))
    grid = StandInDino().grid_hw(*LERF_HW)
    estimate = estimate_run_cost(n, *LERF_HW, linspace_fracs(), 0.5, CLIP_DIM, (n, *grid, DINO_DIM), 0, 0,
                                 ModelConfig(), 4096, "cpu")
    result.update({
        "crops_per_image": crops, "dino_grid": list(grid),
        "clip_cache_mb_per_image": round(clip_file.stat().st_size / n / 1e6, 3),
        "dino_cache_mb_per_image": round(dino_file.stat().st_size / n / 1e6, 3),
        "clip_cache_bytes": clip_file.stat().st_size, "dino_cache_bytes": dino_file.stat().st_size,
        "estimated_clip_cache_bytes": estimate.clip_cache_bytes,
        "estimated_dino_cache_bytes": estimate.dino_cache_bytes,
        "estimated_images_and_caches_ram_mb": round((estimate.image_bytes + estimate.cache_ram_bytes) / 1e6, 1),
    })
    if n != 200:
        scale = 200 / n
        result["scaled_to_200_frames"] = {
            "note": f"measured on {n} frames; sizes and times scaled linearly to 200",
            "clip_cache_gb": round(result["clip_cache_bytes"] * scale / 1e9, 3),
            "dino_cache_gb": round(result["dino_cache_bytes"] * scale / 1e9, 3),
            "images_ram_gb": round(200 * LERF_HW[0] * LERF_HW[1] * 3 / 1e9, 3)}
    big = estimate_run_cost(200, *LERF_HW, linspace_fracs(), 0.5, CLIP_DIM, (200, *grid, DINO_DIM), 0, 0,
                            ModelConfig(), 4096, "cpu")
    result["estimate_200_frames_mb"] = {"clip_cache": round(big.clip_cache_bytes / 1e6, 1),
                                        "dino_cache": round(big.dino_cache_bytes / 1e6, 1),
                                        "images": round(big.image_bytes / 1e6, 1)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--work", default="/tmp/lerf_bench_run_cost")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/run_cost.json"))
    parser.add_argument("--phase", choices=["all", "load", "activations"], default="all")
    parser.add_argument("--model", default="lite")  # --phase activations: the model preset
    parser.add_argument("--rays", default="64,192,320")  # --phase activations: growing batches
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    capture, cache_dir = work / f"capture_{args.frames}", work / f"features_{args.frames}"
    if args.phase == "load":
        print(json.dumps(load_phase(capture, cache_dir)))
        return
    if args.phase == "activations":  # its own process: ru_maxrss only grows
        write_json({"machine": machine(), **activation_phase(args.model, [int(r) for r in args.rays.split(",")])},
                   args.out)
        return

    from tests.real_capture import write_capture

    shutil.rmtree(cache_dir, ignore_errors=True)  # the build times below must be builds, not loads
    t0 = time.perf_counter()
    if not (capture / "transforms.json").is_file():
        write_capture(capture, num_frames=args.frames, height=LERF_HW[0], width=LERF_HW[1], image_ext="jpg")
    result = {"machine": machine(), "frames": args.frames, "image_hw": list(LERF_HW),
              "encoders": "stand-ins of the real output sizes (512-d crops, DINO ViT-S/8 grid of 384-d); "
                          "networks timed separately with random weights",
              "write_capture_s": round(time.perf_counter() - t0, 1)}
    result.update(build_phase(capture, cache_dir))
    load = subprocess.run([sys.executable, __file__, "--phase", "load", "--frames", str(args.frames),
                           "--work", str(work)], capture_output=True, text=True, check=True)
    result.update(json.loads(load.stdout.strip().splitlines()[-1]))

    result.update(sizes_against_estimate(cache_dir, args.frames))
    result.update(real_network_speed())
    result["openclip_hours_for_200_frames"] = round(200 * result["crops_per_image"] / result["openclip_random_crops_per_s"] / 3600, 2)
    write_json(result, args.out)


if __name__ == "__main__":
    main()
