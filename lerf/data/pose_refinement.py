"""Camera pose refinement: a learned SO3×R3 correction per training frame (nerfacto, LERF).

A capture's poses (COLMAP, Polycam) are slightly wrong; a pixel that lands a pixel or two off
blurs the field. Each training frame gets six parameters, a translation and a rotation vector,
trained with the field by the photometric loss. SO3×R3 (nerfstudio's `exp_map_SO3xR3`) maps
them to a rigid correction [R | t] by treating rotation and translation separately, which is
better conditioned than the SE3 exponential for small steps.

The correction multiplies the camera-to-world on the right (nerfstudio's `apply_to_camera`):
`c2w' = c2w · [R | t]`, i.e. it moves the camera in its own frame. Frames that are not trained
on (held-out views) keep their pose exactly: they never see the loss, so a correction there
would be noise. The optimiser settings live in `optim.camera`.

The gauge. The photometric loss cannot see one rigid motion applied to every training camera
and the scene together, so the corrections are free to drift by one (on the noisy demo: 12 mm /
0.13 deg, larger than what they fix), and held-out cameras, whose poses are exact and never
corrected, then no longer line up with the scene. With `pin_gauge` (default), that common
motion is removed: after the per-frame corrections, every training camera is moved by the
inverse of their mean world-frame motion G (rotation: exp of the mean world-frame rotation
vector; translation: chosen so that the mean camera centre stays where the given poses put it).
Per-frame noise is zero-mean, so this is where the true gauge lies on average. With a single
training frame there is nothing to average; pinning then removes the whole correction, so a
one-frame test turns it off.
"""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


def skew(v: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3 3"]:
    """[v]×, the matrix with [v]× w = v × w."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(-1, 3, 3)


def so3_exp(omega: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3 3"]:
    """Rodrigues: R = I + a·K + b·K², K = [ω]×, a = sin θ / θ, b = (1 - cos θ) / θ², θ = |ω|.

    Example: ω = (0, 0, π/2) -> the rotation taking x to y: [[0, -1, 0], [1, 0, 0], [0, 0, 1]].
    Near θ = 0 the Taylor series a = 1 - θ²/6, b = 1/2 - θ²/24 keeps it exact and differentiable.
    """
    theta2 = (omega * omega).sum(-1)
    theta = theta2.clamp(min=1e-12).sqrt()
    small = theta2 < 1e-6
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp(min=1e-12))
    k = skew(omega)
    eye = torch.eye(3, device=omega.device, dtype=omega.dtype).expand_as(k)
    return eye + a[:, None, None] * k + b[:, None, None] * (k @ k)


def so3xr3_exp(delta: Float[Tensor, "n 6"]) -> Float[Tensor, "n 3 4"]:
    """(translation t, rotation vector ω) -> [exp(ω) | t], nerfstudio's layout (t first).

    Example: delta = 0 -> [I | 0], the identity correction.
    """
    return torch.cat([so3_exp(delta[:, 3:]), delta[:, :3, None]], dim=-1)


def compose(c2w: Float[Tensor, "n 3 4"], adj: Float[Tensor, "n 3 4"]) -> Float[Tensor, "n 3 4"]:
    """c2w · adj for rigid 3x4 matrices (the bottom row 0 0 0 1 implied)."""
    rot = c2w[:, :, :3]
    return torch.cat([rot @ adj[:, :, :3], rot @ adj[:, :, 3:] + c2w[:, :, 3:]], dim=-1)


def rotation_angle_deg(r: Float[Tensor, "n 3 3"]) -> Float[Tensor, " n"]:
    """The angle of each rotation matrix, in degrees (from its trace)."""
    cos = ((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos))


def vee_small(r: Float[Tensor, "n 3 3"]) -> Float[Tensor, "n 3"]:
    """Rotation vector of a small rotation, to first order: vee((R - R^T) / 2) = sin(θ)·axis."""
    a = 0.5 * (r - r.transpose(1, 2))
    return torch.stack([a[:, 2, 1], a[:, 0, 2], a[:, 1, 0]], dim=-1)


def pin_gauge(given: Float[Tensor, "n 3 4"], refined: Float[Tensor, "n 3 4"]) -> Float[Tensor, "n 3 4"]:
    """`refined` moved by the inverse of its mean world-frame motion from `given` (module docstring):
    the mean world-frame rotation vector becomes ~0 and the mean camera centre that of `given`.

    Example: refined = G · given for one rigid G shared by all frames -> given (up to the
    first-order rotation average, exact for a pure translation).
    """
    world_rot = refined[:, :, :3] @ given[:, :, :3].transpose(1, 2)
    rot_g = so3_exp(vee_small(world_rot).mean(0, keepdim=True))[0]
    t_g = refined[:, :, 3].mean(0) - rot_g @ given[:, :, 3].mean(0)
    rot = rot_g.T @ refined[:, :, :3]
    centre = (refined[:, :, 3] - t_g) @ rot_g  # rot_g^T (c - t_g), row vectors
    return torch.cat([rot, centre[:, :, None]], dim=-1)


class PoseRefinement(nn.Module):
    """Six parameters per training frame (zeros: no correction at the start)."""

    def __init__(self, train_frames: list[int], num_frames: int, pin_gauge: bool = True):
        super().__init__()
        self.num_frames = num_frames
        self.pin_gauge = pin_gauge
        self.delta = nn.Parameter(torch.zeros(len(train_frames), 6))
        self.register_buffer("frames", torch.as_tensor(train_frames, dtype=torch.long), persistent=False)

    def forward(self, c2w: Float[Tensor, "n 3 4"]) -> Float[Tensor, "n 3 4"]:
        """The refined camera-to-world of every frame; frames not trained on are returned as given."""
        if c2w.shape[0] != self.num_frames:
            raise ValueError(f"pose refinement was built for {self.num_frames} frames, got {c2w.shape[0]} cameras")
        if self.frames.numel() == 0:
            return c2w
        given = c2w[self.frames]
        refined = compose(given, so3xr3_exp(self.delta))
        if self.pin_gauge:
            refined = pin_gauge(given, refined)
        return c2w.index_copy(0, self.frames, refined)


@torch.no_grad()
def mean_correction(refine: PoseRefinement, c2w: Float[Tensor, "n 3 4"]) -> tuple[float, float]:
    """How far the refinement moves the training cameras, after the gauge is pinned: mean
    rotation (degrees) and mean centre shift (the cameras' units)."""
    c2w = c2w.to(refine.delta.device)
    fitted, given = refine(c2w)[refine.frames], c2w[refine.frames]
    # asin of |vee| (= sin θ) instead of the trace's arccos: exact enough at the tiny angles of
    # early training, where the arccos of a float32 rounds to 0 (corrections stay far below 90°)
    rel = fitted[:, :, :3].transpose(1, 2) @ given[:, :, :3]
    rot = torch.rad2deg(torch.asin(vee_small(rel).norm(dim=-1).clamp(max=1.0)))
    return float(rot.mean()), float((fitted[:, :, 3] - given[:, :, 3]).norm(dim=-1).mean())
