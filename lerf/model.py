"""Wires the fields and the rendering functions into one forward(rays) -> outputs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor, nn

from lerf.config import ModelConfig, SceneConfig
from lerf.fields.encodings import to_unit_cube
from lerf.fields.language_field import LanguageField
from lerf.fields.nerf_field import NerfField, ProposalField
from lerf.render import volume
from lerf.render.sampling import intersect_box, sample_pdf, spacing_to_t, uniform_bins


@dataclass
class SceneGeometry:
    """What the model must know about the scene's frame; saved with every checkpoint."""

    bounded: bool
    bound: float
    near: float
    far: float
    scale_factor: float  # normalised units per world unit (metres)
    background: Optional[list[float]]

    @staticmethod
    def from_scene(cfg: SceneConfig, scale_factor: float, background: Optional[Tensor]) -> "SceneGeometry":
        bg = background.tolist() if background is not None else None
        return SceneGeometry(cfg.bounded, cfg.bound, cfg.near, cfg.far, float(scale_factor), bg)


def anneal_exponent(step: int, anneal_steps: int, slope: float = 10.0) -> float:
    """nerfacto's proposal-weight annealing: a = slope·f / ((slope - 1)·f + 1), f = step / steps.

    Example: f = 0 -> 0 (uniform resampling), f = 0.1 -> 0.526, f >= 1 -> 1.
    """
    if anneal_steps <= 0:
        return 1.0
    f = min(max(step / anneal_steps, 0.0), 1.0)
    return slope * f / ((slope - 1) * f + 1)


class LerfModel(nn.Module):
    def __init__(self, cfg: ModelConfig, geometry: SceneGeometry, backend: str,
                 clip_dim: int = 0, dino_dim: int = 0):
        super().__init__()
        if len(cfg.proposals) != len(cfg.proposal_samples):
            raise ValueError(f"model.proposals has {len(cfg.proposals)} networks but model.proposal_samples "
                             f"lists {len(cfg.proposal_samples)} sample counts; they must match")
        self.cfg = cfg
        self.geometry = geometry
        self.field = NerfField(cfg.grid, backend, cfg.hidden_dim, cfg.geo_feat_dim, cfg.color_hidden_dim,
                               cfg.sh_degree)
        self.proposals = nn.ModuleList([ProposalField(p.grid, backend, p.hidden_dim) for p in cfg.proposals])
        self.language: Optional[LanguageField] = None
        if cfg.language.enabled and clip_dim > 0:
            self.language = LanguageField(cfg.language, backend, clip_dim,
                                          dino_dim if cfg.language.dino_enabled else 0)
        bg = torch.tensor(geometry.background) if geometry.background is not None else torch.zeros(0)
        self.register_buffer("background", bg, persistent=False)

    # -- geometry -------------------------------------------------------------------------------
    def _near_far(self, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        if self.geometry.bounded:
            return intersect_box(origins, dirs, self.geometry.bound)
        n = torch.full_like(origins[:, 0], self.geometry.near)
        return n, torch.full_like(n, self.geometry.far)

    def _spacing(self) -> str:
        return "linear" if self.geometry.bounded else "piecewise"

    def _positions(self, origins, dirs, near, far, bins) -> tuple[Tensor, Tensor, Tensor]:
        t = spacing_to_t(bins, near, far, self._spacing())
        t_mid = 0.5 * (t[:, 1:] + t[:, :-1])
        deltas = t[:, 1:] - t[:, :-1]
        pos = origins[:, None, :] + dirs[:, None, :] * t_mid[..., None]
        return pos, t_mid, deltas

    def unit_coords(self, pos: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3"]:
        return to_unit_cube(pos, self.geometry.bounded, self.geometry.bound)

    def forward(self, origins: Float[Tensor, "r 3"], dirs: Float[Tensor, "r 3"], step: int = 10**9,
                jitter: bool = False, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """Render rays: proposal resampling, then the NeRF. Distances are in normalised units."""
        r = origins.shape[0]
        near, far = self._near_far(origins, dirs)
        bins = uniform_bins(r, self.cfg.proposal_samples[0], jitter, origins.device, generator)
        exponent = anneal_exponent(step, self.cfg.proposal_anneal_steps)
        counts = list(self.cfg.proposal_samples[1:]) + [self.cfg.nerf_samples]
        prop_bins, prop_weights = [], []
        for prop, next_count in zip(self.proposals, counts):
            pos, t_mid, deltas = self._positions(origins, dirs, near, far, bins)
            sigma = prop(self.unit_coords(pos.reshape(-1, 3))).reshape(r, -1)
            w = volume.render_weights(sigma, deltas)
            prop_bins.append(bins)
            prop_weights.append(w)
            bins = sample_pdf(bins, w.detach() ** exponent, next_count, jitter, generator=generator)
        pos, t_mid, deltas = self._positions(origins, dirs, near, far, bins)
        n = pos.shape[1]
        view = dirs[:, None, :].expand(-1, n, -1).reshape(-1, 3)
        sigma, rgb = self.field(self.unit_coords(pos.reshape(-1, 3)), view)
        weights = volume.render_weights(sigma.reshape(r, n), deltas)
        acc = weights.sum(-1)
        color = volume.composite(weights, rgb.reshape(r, n, 3))
        if self.background.numel():
            color = volume.add_background(color, acc, self.background.expand(r, 3))
        return {"rgb": color, "accumulation": acc, "depth": volume.expected_depth(weights, t_mid),
                "weights": weights, "bins": bins, "positions": pos,
                "prop_bins": prop_bins, "prop_weights": prop_weights}

    # -- language -------------------------------------------------------------------------------
    def language_samples(self, out: dict[str, Tensor], k: int) -> tuple[Tensor, Tensor]:
        """The k highest-weight samples of each ray; weights detached (LERF §3.3)."""
        weights = out["weights"].detach()
        k = min(k, weights.shape[1])
        w, idx = torch.topk(weights, k, dim=-1)
        pos = out["positions"].detach().gather(1, idx[..., None].expand(-1, -1, 3))
        return pos, w

    def scale_m(self, depth: Float[Tensor, " r"], z_per_t: Float[Tensor, " r"],
                crop_px_over_f: Float[Tensor, " r"]) -> Float[Tensor, " r"]:
        """Physical size of a crop at a ray's depth: crop_px / fy × z-depth, in world units (LERF §3.1).

        With model.language.scale_input = "no_depth" (ablation) every ray is taken to be at
        nominal_depth_m, so the scale is the crop's angular size in disguise.
        """
        lcfg = self.cfg.language
        if lcfg.scale_input == "no_depth":
            return crop_px_over_f * lcfg.nominal_depth_m
        z_world = depth.detach() * z_per_t / self.geometry.scale_factor
        return crop_px_over_f * z_world

    def language_bottleneck(self, pos: Float[Tensor, "r k 3"]) -> Float[Tensor, "rk b"]:
        """Scale-independent part of the language field, shared by every scale of a query."""
        if self.language is None:
            raise RuntimeError("this model has no language field (model.language.enabled=false)")
        return self.language.bottleneck(self.unit_coords(pos.reshape(-1, 3)))

    def composite_clip(self, bottleneck: Float[Tensor, "rk b"], w: Float[Tensor, "r k"],
                       scale_m: Float[Tensor, " r"]) -> Float[Tensor, "r d"]:
        """Rendered CLIP embedding of each ray at its scale, unit norm (zero for an empty ray)."""
        r, k = w.shape
        scales = scale_m[:, None].expand(r, k).reshape(-1)
        clip = self.language.clip(bottleneck, scales).reshape(r, k, -1)
        return nn.functional.normalize(volume.composite(w, clip), dim=-1)

    def render_language(self, pos: Float[Tensor, "r k 3"], w: Float[Tensor, "r k"],
                        scale_m: Float[Tensor, " r"]) -> dict[str, Tensor]:
        """Rendered CLIP embedding (unit norm) and DINO feature of each ray."""
        bottleneck = self.language_bottleneck(pos)
        out = {"clip": self.composite_clip(bottleneck, w, scale_m)}
        if self.language.dino_head is not None:
            r, k = w.shape
            out["dino"] = volume.composite(w, self.language.dino(bottleneck).reshape(r, k, -1))
        return out
