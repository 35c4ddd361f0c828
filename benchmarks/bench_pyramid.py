"""CLIP pyramid build cost: time and disk size per image, real OpenCLIP ViT-B-16 architecture.

    python benchmarks/bench_pyramid.py                                  # 3 images 1440x1080, LERF's 7 levels
    python benchmarks/bench_pyramid.py --images 1 --fracs 0.35 0.425 0.5   # a subset of levels (CPU)
    python benchmarks/bench_pyramid.py --device cuda --out benchmarks/results/pyramid_cuda.json

Random weights (`allow_random_weights=True`): the cost of a forward pass does not depend on the
weights, and this machine cannot download them. Images are random noise (content does not
matter either). The build goes through the real cache path (`load_or_build_clip_pyramid`: image
hashing, batched crops with a progress bar, fp16 memmap write, sidecar), into a temp dir.

The number of crops per image depends on the aspect ratio and the crop fractions, not on the
resolution (crops are fractions of the image height, each resized to 224 px), so when only some
levels are built (`--fracs`) the JSON also extrapolates to the full LERF pyramid from the
measured seconds per crop; `measured` and `extrapolated` fields are kept apart.
Also times `ClipPyramid.lookup` for a batch of 4096 rays, from a memmap and from RAM: on the
pyramid just built, and on a full-size one (`--lookup-images` images x LERF's 7 levels, random
fp16 rows) because gather cost grows with the table (cache misses). The memmap's file was just
written, so it is in the page cache: `first_s` pays page-mapping faults, not disk reads.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lerf.encoders.cache import load_or_build_clip_pyramid
from lerf.encoders.factory import build_clip_encoder
from lerf.encoders.pyramid import ClipPyramid, PyramidInputs, linspace_fracs, pyramid_grids

LERF_FRACS = linspace_fracs(0.05, 0.5, 7)  # LERF §3.1


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=3)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--width", type=int, default=1440)
    p.add_argument("--fracs", type=float, nargs="+", default=LERF_FRACS, help="crop fractions to build")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--rays", type=int, default=4096, help="lookup batch size")
    p.add_argument("--lookup-images", type=int, default=100, help="images in the full-size lookup table")
    p.add_argument("--out", default="benchmarks/results/pyramid_cpu.json")
    return p.parse_args()


def time_lookups(pyr, n_images: int, h: int, w: int, rays: int, repeats: int = 10) -> dict:
    g = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats):
        args = (torch.randint(0, n_images, (rays,), generator=g), torch.rand(rays, generator=g) * w,
                torch.rand(rays, generator=g) * h,
                pyr.min_frac + torch.rand(rays, generator=g) * (pyr.max_frac - pyr.min_frac))
        start = time.perf_counter()
        pyr.lookup(*args)
        times.append(time.perf_counter() - start)
    return {"first_s": round(times[0], 4), "median_s": round(statistics.median(times), 4)}


def time_full_size_lookups(h: int, w: int, n_images: int, dim: int, rays: int) -> dict:
    """Lookup timings on a synthetic full LERF pyramid of `n_images` images (random fp16 rows)."""
    levels = tuple(pyramid_grids(h, w, LERF_FRACS))
    rows = n_images * sum(lv.cells_per_image for lv in levels)
    rng = np.random.default_rng(0)
    result = {"images": n_images, "rows": rows, "bytes": rows * dim * 2}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.npy"
        table = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(rows, dim))
        for start in range(0, rows, 1 << 16):
            stop = min(rows, start + (1 << 16))
            table[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
        table.flush()
        del table
        for mode in ("memmap", "ram"):
            data = np.load(path, mmap_mode="r")
            pyr = ClipPyramid(data if mode == "memmap" else np.array(data), levels, n_images, (h, w))
            result[mode] = time_lookups(pyr, n_images, h, w, rays)
    return result


def build_and_time(args, encoder, images) -> tuple[float, dict, dict, dict]:
    """Build the pyramid into a temporary cache; returns build seconds, file sizes, the sidecar,
    and lookup timings with the cache memory-mapped and in RAM."""
    inputs = PyramidInputs(images, None, encoder, args.fracs)
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        load_or_build_clip_pyramid(cache_dir, inputs, batch_size=args.batch_size)
        total_s = time.perf_counter() - start
        files = sorted(Path(cache_dir).iterdir())
        disk_bytes = {f.name: f.stat().st_size for f in files}
        sidecar = json.loads(next(f for f in files if f.suffix == ".json").read_text())
        lookups = {}
        for mode, in_memory in (("memmap", False), ("ram", True)):
            pyr = load_or_build_clip_pyramid(cache_dir, inputs, in_memory=in_memory, progress=False)
            lookups[mode] = time_lookups(pyr, args.images, args.height, args.width, args.rays)
    return total_s, disk_bytes, sidecar, lookups


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    load_before = os.getloadavg()
    encoder = build_clip_encoder("openclip", device=args.device, precision=args.precision,
                                 allow_random_weights=True)
    images = torch.rand(args.images, args.height, args.width, 3, generator=torch.Generator().manual_seed(0))
    crops_measured = args.images * sum(lv.cells_per_image for lv in pyramid_grids(
        args.height, args.width, args.fracs))
    crops_full_per_image = sum(lv.cells_per_image for lv in pyramid_grids(args.height, args.width, LERF_FRACS))

    total_s, disk_bytes, sidecar, lookups = build_and_time(args, encoder, images)

    full_lookups = time_full_size_lookups(args.height, args.width, args.lookup_images,
                                          encoder.embed_dim, args.rays)
    s_per_crop = sidecar["build_s"] / crops_measured
    npy_bytes = sum(v for k, v in disk_bytes.items() if k.endswith(".npy"))
    result = {
        "benchmark": "clip_pyramid_build",
        "encoder": encoder.cache_key(),
        "device": args.device,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "images": args.images, "height": args.height, "width": args.width,
        "batch_size": args.batch_size, "crop_fracs_built": list(args.fracs),
        "measured": {
            "crops": crops_measured,
            "crops_per_image": crops_measured // args.images,
            "encode_and_write_s": sidecar["build_s"],
            "total_s_incl_hash_and_load": round(total_s, 3),
            "s_per_crop": round(s_per_crop, 4),
            "s_per_image": round(sidecar["build_s"] / args.images, 2),
            "disk_bytes": disk_bytes,
            "disk_bytes_per_image": round(npy_bytes / args.images),
            f"lookup_{args.rays}_rays_this_pyramid": lookups,
            f"lookup_{args.rays}_rays_full_size_pyramid": full_lookups,
        },
        "extrapolated_full_lerf_pyramid": {
            "crop_fracs": LERF_FRACS,
            "crops_per_image": crops_full_per_image,
            "s_per_image": round(crops_full_per_image * s_per_crop, 1),
            "disk_bytes_per_image": crops_full_per_image * encoder.embed_dim * 2,
            "note": "crops per image x measured s/crop; fp16 rows of embed_dim (no .npy header)",
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
