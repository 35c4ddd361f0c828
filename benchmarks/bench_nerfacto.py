"""nerfstudio's nerfacto on a lerf scene, scored like ours: held-out PSNR/SSIM and time per step.

    # in a separate venv with nerfstudio (never a lerf dependency):
    #   python3 -m venv /work/ns-venv && /work/ns-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 \\
    #       && /work/ns-venv/bin/pip install nerfstudio==1.1.5 torch==2.14.1 torchvision==0.29.1
    /work/ns-venv/bin/python benchmarks/bench_nerfacto.py --scene .cache/lerf/demo_s0_48v_128x128 \\
        --steps 1000 --rays 2048 --out benchmarks/results/nerfacto_demo.json

nerfacto runs through nerfstudio's own Trainer on the CPU (single process: the vanilla data
manager, torch hash grid), with nerfstudio's held-out split set to ours (every 8th frame,
`eval_mode=interval`). `--size demo` (the default) gives nerfacto our demo preset's sizes
(conf/model/demo.yaml: 8-level 2^15 grid to 256, one 4-level proposal net, 48 -> 24 samples,
32-wide MLPs, annealing over 300 steps); `--size nerfacto` keeps nerfstudio's. Everything else
is nerfstudio's nerfacto as shipped, including its appearance embedding and camera optimiser
(switch them off with --no-appearance / --no-camera-opt). Held-out renders are scored with
lerf.evaluation.image_metrics, the functions that score our runs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from lerf.evaluation.image_metrics import psnr, ssim  # noqa: E402

DEMO_SIZE = dict(hidden_dim=32, hidden_dim_color=32, num_levels=8, max_res=256, log2_hashmap_size=15,
                 num_proposal_samples_per_ray=(48,), num_nerf_samples_per_ray=24, num_proposal_iterations=1,
                 proposal_net_args_list=[{"hidden_dim": 16, "log2_hashmap_size": 13, "num_levels": 4, "max_res": 64,
                                          "use_linear": False}],
                 proposal_weights_anneal_max_num_iters=300, distortion_loss_mult=0.001, appearance_embed_dim=8)


def stub_lpips() -> None:
    """nerfacto builds torchmetrics' LPIPS at start-up, which downloads AlexNet weights: impossible
    offline, and never used here (we score PSNR/SSIM ourselves). Register a stand-in class."""
    import torchmetrics.image.lpip as lpip

    class NoLPIPS(torch.nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()

        def forward(self, *args, **kwargs):
            return torch.tensor(float("nan"))

    lpip.LearnedPerceptualImagePatchSimilarity = NoLPIPS


def nerfacto_config(args: argparse.Namespace):
    """nerfstudio's nerfacto TrainerConfig, pointed at the scene, on the CPU, no viewer, no mid-run eval."""
    from nerfstudio.configs.method_configs import method_configs
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig

    config = method_configs["nerfacto"]
    old = config.pipeline.datamanager
    config.pipeline.datamanager = VanillaDataManagerConfig(
        dataparser=old.dataparser, train_num_rays_per_batch=args.rays, eval_num_rays_per_batch=args.rays)
    config.pipeline.datamanager.dataparser.eval_mode = "interval"
    config.pipeline.datamanager.dataparser.eval_interval = 8
    config.data = config.pipeline.datamanager.data = Path(args.scene)  # as ns-train's main() does
    config.output_dir = Path(args.work_dir)
    config.machine.device_type = "cpu"
    config.machine.seed = args.seed
    config.vis = "tensorboard"
    config.max_num_iterations = args.steps
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**9
    config.steps_per_save = 10**9
    config.save_only_latest_checkpoint = True
    model = config.pipeline.model
    model.implementation = "torch"
    if args.size == "demo":
        for key, value in DEMO_SIZE.items():
            setattr(model, key, value)
    model.use_appearance_embedding = not args.no_appearance
    if args.no_camera_opt:
        model.camera_optimizer.mode = "off"
    return config


def train(config) -> tuple[object, float]:
    """Train as `ns-train` does; returns the trainer and the seconds spent in the step loop."""
    import random

    import numpy as np

    random.seed(config.machine.seed)
    np.random.seed(config.machine.seed)
    torch.manual_seed(config.machine.seed)
    config.set_timestamp()
    config.save_config()  # config.yml in the run folder: every nerfacto setting used
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    t0 = time.perf_counter()
    trainer.train()
    return trainer, time.perf_counter() - t0


@torch.no_grad()
def score_held_out(pipeline) -> dict:
    """PSNR/SSIM of every held-out view, rendered from its given pose (mean appearance)."""
    pipeline.eval()
    per_view = {}
    dm = pipeline.datamanager
    for camera, batch in dm.fixed_indices_eval_dataloader:
        pred = pipeline.model.get_outputs_for_camera(camera)["rgb"].clamp(0, 1).cpu()
        gt = batch["image"][..., :3].float().cpu()
        name = Path(dm.eval_dataset.image_filenames[batch["image_idx"]]).stem
        per_view[name] = {"psnr": float(psnr(pred, gt)), "ssim": float(ssim(pred, gt))}
    n = len(per_view)
    return {"psnr": sum(v["psnr"] for v in per_view.values()) / n,
            "ssim": sum(v["ssim"] for v in per_view.values()) / n, "num_views": n, "per_view": per_view}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", required=True, help="a nerfstudio-format scene (e.g. the demo cache)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rays", type=int, default=2048)
    parser.add_argument("--size", choices=("demo", "nerfacto"), default="demo")
    parser.add_argument("--no-appearance", action="store_true")
    parser.add_argument("--no-camera-opt", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--work-dir", default="outputs/nerfacto")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    stub_lpips()
    trainer, seconds = train(nerfacto_config(args))
    result = score_held_out(trainer.pipeline)
    result.update({"method": "nerfstudio nerfacto", "scene": args.scene, "steps": args.steps, "rays": args.rays,
                   "size": args.size, "appearance": not args.no_appearance, "camera_opt": not args.no_camera_opt,
                   "train_time_s": seconds, "s_per_step": seconds / args.steps, "torch": torch.__version__,
                   "threads": torch.get_num_threads(), "nerfstudio": _version("nerfstudio")})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"nerfacto: PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f}, {result['s_per_step']:.3f} s/step")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
