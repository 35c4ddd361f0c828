"""Pose error of a run's training cameras, where the scene knows the true poses.

The noisy demo (scene.capture_noise) records each perturbed frame's true pose in transforms.json
("capture_noise" → "true_transform_matrix"); real captures have no ground truth, so this reports
nothing for them. Errors are per frame: the angle of R_fitted^T R_true (degrees) and the distance
between camera centres (metres, world units), averaged over the perturbed frames.
"""
from __future__ import annotations

import json
from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor

from lerf.data.pose_refinement import rotation_angle_deg
from lerf.data.scene import SceneData


def true_poses(scene: SceneData) -> Optional[tuple[list[int], Float[Tensor, "k 3 4"]]]:
    """(frame indices, true c2w in the scene's normalised frame) of the frames given noisy poses."""
    path = scene.root / "transforms.json"
    frames = json.loads(path.read_text()).get("frames", []) if path.is_file() else []
    idx, poses = [], []
    for k, frame in enumerate(frames):
        record = frame.get("capture_noise") if isinstance(frame, dict) else None
        if record:
            idx.append(k)
            poses.append(torch.tensor(record["true_transform_matrix"], dtype=torch.float64)[:3])
    if not idx:
        return None
    c2w = torch.stack(poses)
    c2w[:, :, 3] = (c2w[:, :, 3] - scene.center_world.double()) * scene.scale_factor  # as normalise_cameras
    return idx, c2w.float()


def pose_errors(scene: SceneData) -> Optional[dict]:
    """Mean rotation (deg) and translation (m) error of the scene's cameras against the truth."""
    truth = true_poses(scene)
    if truth is None:
        return None
    idx, true_c2w = truth
    c2w = scene.cameras.c2w[idx].float()
    rot = rotation_angle_deg(c2w[:, :, :3].transpose(1, 2) @ true_c2w[:, :, :3])
    trans_m = (c2w[:, :, 3] - true_c2w[:, :, 3]).norm(dim=-1) / scene.scale_factor
    return {"rotation_deg": float(rot.mean()), "translation_m": float(trans_m.mean()), "num_frames": len(idx)}
