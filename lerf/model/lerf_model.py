"""Wires the fields and the rendering functions into one forward(rays) -> outputs."""
from __future__ import annotations


from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from lerf.config import ModelConfig, SceneConfig
from lerf.data.contraction import to_unit_cube
from lerf.data.pose_refinement import PoseRefinement
from lerf.fields.appearance import AppearanceEmbedding
from lerf.fields.hashgrid import resolve_hashgrid_backend
from lerf.fields.language_field import LanguageField
from lerf.fields.nerf_field import NerfField, ProposalField
from lerf.render import volume
from lerf.render.sampling import intersect_box, sample_pdf, spacing_to_t, uniform_bins



@dataclass
class SceneGeometry:
    """What the model must know about the scene: its frame (normalisation, bounds, background)
    and which frames it trains on (per-frame appearance and pose corrections are indexed by
    them); saved with every checkpoint."""

    bounded: bool
    bound: float
    near: float
    far: float
    scale_factor: float  # normalised units per metre (the poses' units times scene.metres_per_unit)
    background: Optional[list[float]]
    num_frames: int = 0
    train_frames: list[int] = field(default_factory=list)  # scene frame indices, in order

    @staticmethod
    def from_scene(cfg: SceneConfig, scale_factor: float, background: Optional[Tensor], num_frames: int = 0,
                   train_frames: Optional[list[int]] = None) -> "SceneGeometry":
        """`scale_factor`: normalised units per pose unit (SceneData.scale_factor)."""
        bg = background.tolist() if background is not None else None
        if not cfg.metres_per_unit > 0:
            raise ValueError(f"scene.metres_per_unit must be > 0, got {cfg.metres_per_unit}")
        # scale_factor is per pose unit; per metre it is that divided by metres per unit.
        return SceneGeometry(cfg.bounded, cfg.bound, cfg.near, cfg.far, float(scale_factor) / cfg.metres_per_unit, bg,
                             num_frames, list(train_frames or []))


class ClipFactors(NamedTuple):
    """Exact factors of rendered CLIP embeddings at several scales (`LerfModel.clip_factors`)."""

    hidden: Float[Tensor, "s r h"]  # H = sum_k (w_k / n_k) h_k
    weight_sum: Float[Tensor, "s r"]  # A = sum_k w_k / n_k
    norm: Float[Tensor, "s r"]  # ||W·H + c·A||: zero for a ray with no weight


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
                               cfg.sh_degree, cfg.appearance_dim if cfg.appearance else 0)
        self.proposals = nn.ModuleList([ProposalField(p.grid, backend, p.hidden_dim) for p in cfg.proposals])
        self.language: Optional[LanguageField] = None
        if cfg.language.enabled and clip_dim > 0:
            self.language = LanguageField(cfg.language, backend, clip_dim,
                                          dino_dim if cfg.language.dino_enabled else 0)
        # Per-frame parts last, so switching them on leaves the other networks' initialisation as is.
        self.appearance: Optional[AppearanceEmbedding] = None
        if cfg.appearance:
            self.appearance = AppearanceEmbedding(geometry.train_frames, geometry.num_frames, cfg.appearance_dim,
                                                  cfg.appearance_eval)
        self.pose_refinement: Optional[PoseRefinement] = None
        if cfg.pose_refinement:
            self.pose_refinement = PoseRefinement(geometry.train_frames, geometry.num_frames, cfg.pose_pin_gauge)
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
        """The NeRF's (and the visibility grid's) hash-grid coordinates: nerfacto's L-inf contraction."""
        return to_unit_cube(pos, self.geometry.bounded, self.geometry.bound)

    def language_coords(self, pos: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3"]:
        """The language field's hash-grid coordinates: `model.language.contraction` (the authors'
        L2 by default); identical to `unit_coords` in a bounded scene, which is a box."""
        return to_unit_cube(pos, self.geometry.bounded, self.geometry.bound, self.cfg.language.contraction)

    def refined_c2w(self, c2w: Float[Tensor, "n 3 4"]) -> Float[Tensor, "n 3 4"]:
        """The scene's camera-to-world (normalised frame) with the learned pose corrections of the
        training frames applied; unchanged when pose refinement is off."""
        return self.pose_refinement(c2w) if self.pose_refinement is not None else c2w

    def _sample_appearance(self, frame_idx: Optional[Tensor], r: int, n: int) -> Optional[Tensor]:
        """Each sample's appearance vector: its ray's frame's, repeated along the ray."""
        if self.appearance is None:
            return None
        per_ray = self.appearance(frame_idx, r)
        return per_ray[:, None, :].expand(-1, n, -1).reshape(r * n, -1)

    def forward(self, origins: Float[Tensor, "r 3"], dirs: Float[Tensor, "r 3"], step: int = 10**9,
                jitter: bool = False, generator: Optional[torch.Generator] = None,
                frame_idx: Optional[Int[Tensor, " r"]] = None) -> dict[str, Tensor]:
        """Render rays: proposal resampling, then the NeRF. Distances are in normalised units.

        `frame_idx` names each ray's scene frame (training rays) for the appearance embedding;
        None, or a frame the model did not train on, renders with the eval choice
        (`model.appearance_eval`)."""
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
        sigma, rgb = self.field(self.unit_coords(pos.reshape(-1, 3)), view, self._sample_appearance(frame_idx, r, n))
        weights = volume.render_weights(sigma.reshape(r, n), deltas)
        acc = weights.sum(-1)
        color = volume.composite(weights, rgb.reshape(r, n, 3))
        if self.background.numel():
            color = volume.add_background(color, acc, self.background.expand(r, 3))
        return {"rgb": color, "accumulation": acc, "depth": volume.expected_depth(weights, t_mid),
                "weights": weights, "bins": bins, "positions": pos, "t_mid": t_mid,
                "prop_bins": prop_bins, "prop_weights": prop_weights}

    # -- language -------------------------------------------------------------------------------
    def language_samples(self, out: dict[str, Tensor], k: int
                         ) -> tuple[Float[Tensor, "r k 3"], Float[Tensor, "r k"], Float[Tensor, "r k"]]:
        """The k highest-weight samples of each ray: positions, weights and distances along the
        ray (normalised units), all detached (LERF §3.3)."""
        weights = out["weights"].detach()
        k = min(k, weights.shape[1])
        w, idx = torch.topk(weights, k, dim=-1)
        pos = out["positions"].detach().gather(1, idx[..., None].expand(-1, -1, 3))
        return pos, w, out["t_mid"].detach().gather(1, idx)

    def language_bottleneck(self, pos: Float[Tensor, "... 3"]) -> Float[Tensor, "n b"]:
        """Scale-independent part of the language field, shared by every scale of a query."""
        if self.language is None:
            raise RuntimeError("this model has no language field (model.language.enabled=false)")
        return self.language.bottleneck(self.language_coords(pos.reshape(-1, 3)))

    def sample_clip(self, bottleneck: Float[Tensor, "rk b"], scale_m: Float[Tensor, "r k"]) -> Float[Tensor, "r k d"]:
        """Each sample's CLIP embedding at its own scale; unit length when
        `language.normalize_samples` (the authors' field normalises its output)."""
        r, k = scale_m.shape
        clip = self.language.clip(bottleneck, scale_m.reshape(-1)).reshape(r, k, -1)
        return nn.functional.normalize(clip, dim=-1) if self.cfg.language.normalize_samples else clip

    def composite_clip(self, bottleneck: Float[Tensor, "rk b"], w: Float[Tensor, "r k"],
                       scale_m: Float[Tensor, "r k"]) -> Float[Tensor, "r d"]:
        """Rendered CLIP embedding of each ray, unit norm (zero for an empty ray).

        Worked example (normalize_samples): two samples with outputs (3, 0) and (0, 1) and weights
        0.5, 0.5 -> per-sample units (1, 0), (0, 1) -> sum (0.5, 0.5) -> (0.707, 0.707); without
        per-sample normalisation the raw sum (1.5, 0.5) gives (0.949, 0.316).
        """
        return nn.functional.normalize(volume.composite(w, self.sample_clip(bottleneck, scale_m)), dim=-1)

    # -- language readout: what queries read from the field ------------------------------------
    # A query puts every language sample of a ray at one searched scale (as the authors' code
    # does). Three public readouts of that embedding, so that no caller reaches into the CLIP head:
    # `clip_at_scales` (the reference: composited exactly as in training), `clip_factors` (exact
    # factors through the head's last linear layer: what the query caches store) and
    # `clip_text_factors` (texts projected through that layer, so that a text's similarity to a
    # ray is a product with its factors).
    def clip_at_scales(self, pos: Float[Tensor, "r k 3"], w: Float[Tensor, "r k"], scales_m: Float[Tensor, " s"]
                       ) -> Float[Tensor, "s r d"]:
        """Rendered unit CLIP embedding of each ray at each scale, every sample at that scale (zero
        for a ray with no weight); the bottleneck is shared across scales."""
        bottleneck = self.language_bottleneck(pos)
        return torch.stack([self.composite_clip(bottleneck, w, torch.full_like(w, float(s))) for s in scales_m.tolist()])

    def clip_factors(self, pos: Float[Tensor, "r k 3"], w: Float[Tensor, "r k"], scales_m: Float[Tensor, " s"]
                     ) -> ClipFactors:
        """`clip_at_scales` as exact prompt-independent factors, smaller than the embeddings.

        The CLIP head ends in a linear layer (W, c): sample k's output is W h_k + c. With per-sample
        normalisation each is divided by n_k = ||W h_k + c|| before the weighted sum, so a ray's
        unnormalised embedding is W·H + c·A with H = sum_k (w_k/n_k) h_k (hidden width) and
        A = sum_k w_k/n_k (n_k = 1 without it). A text t then scores ((t·W)·H + (t·c)·A) / norm
        with norm = ||W·H + c·A|| — the same as t·normalize(embedding) (`clip_text_factors`).

        A sample of weight 0 (one the visibility filter dropped: about 10 % on the demo's views)
        adds nothing to H or A, so the field runs only on the others; the dropped ones enter the
        sums as exact zeros. The head's first layer is computed once for all scales
        (`LanguageField.clip_hidden_per_scale`).
        """
        r, k = w.shape
        kept = (w.reshape(-1) > 0).nonzero().squeeze(-1)
        bottleneck = self.language_bottleneck(pos.reshape(-1, 3)[kept])
        layer = self.language.clip_out
        hidden, wsums, norms = [], [], []
        for h_kept in self.language.clip_hidden_per_scale(bottleneck, scales_m.tolist()):
            h = h_kept.new_zeros(r * k, h_kept.shape[-1]).index_copy_(0, kept, h_kept)
            wk = w
            if self.cfg.language.normalize_samples:
                norm = w.new_ones(r * k).index_copy_(0, kept, layer(h_kept).norm(dim=-1).clamp_min(1e-12))
                wk = w / norm.reshape(r, k)
            big_h = torch.einsum("rk,rkh->rh", wk, h.reshape(r, k, -1))
            a = wk.sum(-1)
            hidden.append(big_h)
            wsums.append(a)
            norms.append((big_h @ layer.weight.T + a[:, None] * layer.bias).norm(dim=-1))
        return ClipFactors(torch.stack(hidden), torch.stack(wsums), torch.stack(norms))

    @torch.no_grad()
    def clip_text_factors(self, texts: Float[Tensor, "t d"]) -> Float[Tensor, "t hp"]:
        """g_t = [t·W, t·c] for each text t (W, c: the CLIP head's last layer), so that a ray's
        similarity to t is g_t · [H, A] / norm (`clip_factors`); hp = `clip_hidden_width` + 1."""
        layer = self.language.clip_out
        return torch.cat([texts @ layer.weight, (texts @ layer.bias)[:, None]], -1)

    @property
    def clip_hidden_width(self) -> int:
        """Width of H in `clip_factors` (the CLIP head's last hidden layer)."""
        return self.language.clip_out.in_features

    def render_language(self, pos: Float[Tensor, "r k 3"], w: Float[Tensor, "r k"],
                        scale_m: Float[Tensor, "r k"]) -> dict[str, Tensor]:
        """Rendered CLIP embedding (unit norm) and DINO feature of each ray; `scale_m` is each
        sample's physical scale."""
        bottleneck = self.language_bottleneck(pos)
        out = {"clip": self.composite_clip(bottleneck, w, scale_m)}
        if self.language.dino_head is not None:
            out["dino"] = self.language.composite_dino(bottleneck, w)
        return out


def build_model(cfg: ModelConfig, geometry: SceneGeometry, device: torch.device, clip_dim: int = 0,
                dino_dim: int = 0) -> tuple[LerfModel, str]:
    """The model on `device`, with the hash-grid backend resolved once against that device."""
    backend = resolve_hashgrid_backend(cfg.backend, device)
    model = LerfModel(cfg, geometry, backend, clip_dim, dino_dim).to(device)
    return model, backend
