"""Similarity alignment of two sets of camera poses, and the pose errors that remain after it.

SfM recovers cameras up to a similarity (rotation, translation, scale): to compare them with
known cameras, fit that similarity to the camera positions first (Umeyama 1991, "Least-squares
estimation of transformation parameters between two point patterns", closed form via the SVD of
the cross-covariance).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float

from lerf.data.nerfstudio import read_nerfstudio


@dataclass
class Similarity:
    scale: float
    rotation: Float[np.ndarray, "3 3"]
    translation: Float[np.ndarray, "3"]

    def apply(self, points: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
        return self.scale * points @ self.rotation.T + self.translation


def umeyama(src: Float[np.ndarray, "n 3"], dst: Float[np.ndarray, "n 3"]) -> Similarity:
    """The similarity s, R, t minimising sum |dst - (s R src + t)|^2 (n >= 3, not collinear).

    Example: dst = 2 * src rotated 90 degrees about z, shifted by (1, 0, 0) -> scale 2, that
    rotation, translation (1, 0, 0), exactly.
    """
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    a, b = src - mu_src, dst - mu_dst
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    sign[2, 2] = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0  # a rotation, never a reflection
    rotation = u @ sign @ vt
    var_src = (a ** 2).sum() / len(src)
    scale = float(np.trace(np.diag(d) @ sign) / var_src)
    return Similarity(scale, rotation, mu_dst - scale * rotation @ mu_src)


@dataclass
class PoseErrors:
    rotation_deg: Float[np.ndarray, " n"]
    position_m: Float[np.ndarray, " n"]  # in the units of the reference poses
    alignment: Similarity  # estimate -> reference


def rotation_angle_deg(r: Float[np.ndarray, "n 3 3"]) -> Float[np.ndarray, " n"]:
    """Angle of each rotation matrix. Example: a 90 degree turn about any axis -> 90."""
    cos = (np.trace(r, axis1=1, axis2=2) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def pose_errors(c2w_est: Float[np.ndarray, "n 4 4"], c2w_ref: Float[np.ndarray, "n 4 4"]) -> PoseErrors:
    """Align the estimated camera positions to the reference ones (Umeyama), then per camera: the
    angle between the aligned and the reference orientation, and the distance between positions.
    Both poses must use the same camera axes convention (here OpenGL)."""
    sim = umeyama(c2w_est[:, :3, 3], c2w_ref[:, :3, 3])
    aligned_rot = sim.rotation[None] @ c2w_est[:, :3, :3]
    rot_err = rotation_angle_deg(np.transpose(c2w_ref[:, :3, :3], (0, 2, 1)) @ aligned_rot)
    pos_err = np.linalg.norm(sim.apply(c2w_est[:, :3, 3]) - c2w_ref[:, :3, 3], axis=1)
    return PoseErrors(rot_err, pos_err, sim)


def _poses_by_name(root: Path) -> dict[str, np.ndarray]:
    raw = read_nerfstudio(root, load_images=False)
    c2w = np.zeros((len(raw.frame_names), 4, 4))
    c2w[:, :3, :] = raw.cameras.c2w.double().numpy()
    c2w[:, 3, 3] = 1
    return {Path(n).name: p for n, p in zip(raw.frame_names, c2w)}


def _truth_name(source: str, truth_names: list[str]) -> str:
    """The truth frame a prepared frame came from: a photo by file name, a video frame by index
    (the k-th frame of a video made from the truth's images, in order)."""
    if source.startswith("video frame "):
        k = int(source.split()[-1])
        return truth_names[k] if k < len(truth_names) else ""
    return Path(source).name


def prepared_vs_truth(prepared: Path, truth: Path) -> tuple[PoseErrors, list[str]]:
    """Pose errors of a prepared scene against a scene with the true poses of the same photos or
    video frames (matched through prepare.json's frame_sources), and the frames compared."""
    sources = json.loads((prepared / "prepare.json").read_text())["frame_sources"]
    est, ref = _poses_by_name(prepared), _poses_by_name(truth)
    pairs = {n: _truth_name(sources[n], list(ref)) for n in est}
    names = [n for n in est if pairs[n] in ref]
    if len(names) < 3:
        raise ValueError(f"{prepared}: fewer than 3 registered frames match {truth}'s frames")
    return pose_errors(np.stack([est[n] for n in names]), np.stack([ref[pairs[n]] for n in names])), names
