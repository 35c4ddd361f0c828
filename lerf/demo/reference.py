"""Synthetic reference encoders: a TEST INSTRUMENT for the demo scene and the test-suite.

They are not models of anything. They replace CLIP and DINO on a synthetic scene whose parts,
objects, groups and depths are known per pixel, so that the whole LERF pipeline (pyramid -> field
-> relevancy) can be checked end to end with an answer known in advance, offline and in seconds.
Never use them for a real capture: they need ground-truth masks and carry no visual understanding.

`ReferenceClipEncoder` mimics the properties of CLIP that LERF relies on.

Embedding geometry. Every embedding is sqrt(rho)·c + sqrt(1 - rho)·content, where c is one shared
unit vector and content a unit vector orthogonal to it. Ordinary texts use rho = RHO = 0.2, so
unrelated texts have cosine 0.2, as unrelated real CLIP embeddings do; generic phrases (LERF's
canonical phrases, always, plus any passed in as `generic_phrases`) use RHO_GENERIC = 0.8, i.e.
they sit close to the shared part, so an off-target region scores about 0.5 or less and an
on-target one about 1.

Content composes from words: a one-word text is its word's vector; a longer text is
normalise(v_phrase + MODIFIER_WEIGHT·(v_w1 + ...) + HEAD_WEIGHT·v_head) with the head noun last and
v_phrase the phrase's own direction (a phrase means more than its words). So "red mug" and
"red apple" share "red" (cosine 0.34), "red mug" and "white mug" share "mug" (0.46), "teapot lid"
and "blue teapot" share "teapot" (0.39); the names of the instrument's vocabulary (every name in
the hierarchy, their words, the generic phrases) get exactly orthonormal directions, any other
word a seeded random one.

The canonical phrases' roles (CANONICAL_ROLES). In real CLIP they are not interchangeable:
"stuff" and "texture" sit nearer plain surfaces and backgrounds than "object" and "things" do, and
relevancy's min over them (the hardest negative) is what holds down a table or a wall that looks
a little like the query. So here the content of "stuff" leans towards what stuff pixels read
(the background, the "stuff" objects of the hierarchy — the table — and their close-up reading
"surface"), that of "texture" towards "surface": content = normalise(v_phrase + ROLE_LEAN·u),
u the normalised sum of those names' directions. "object" and "things" keep their own direction.
A close-up of the table then has cosine 0.4 with "object" and 0.68 with "texture" (an ordinary
object crop 0.4 with all four), so an unrelated query scores 0.12 there with "object" alone and
0.008 with the min over all four (the sensitivity rows `experiment=one_canonical` and
`max_canonical` take that away). A reading is never itself a canonical phrase: a too-close crop of an object without
an attribute word reads "surface", not "texture".

What a crop means: its physical extent against the hierarchy. The crop is read pixel by pixel;
`crop_m` gives, per pixel, the crop's side in metres at that pixel's depth (crop side in pixels x
camera-z depth / focal length). A pixel of part p of object o of group g is read at one of four
levels, by comparing s = crop_m with the sizes (bounding-sphere diameters) d_p and d_o:

    texture  s < ALPHA·d          too close to see what it is: the object's attribute word
                                  ("red", "blue"; "surface" for an object without one),
                                  d = d_p on a named part, d_o elsewhere
    part     ALPHA·d_p < s < d_p  the part ("teapot lid"); only on named parts
    object   ... < s < d_o        the object ("blue teapot")
    group    s > d_o              the group ("tea set"), but only when the crop covers at least
                                  two members of g (each >= GROUP_MIN_COVER of the crop);
                                  otherwise the object stays

Transitions are logistic in ln(s) with width SOFTNESS, applied as successive splits (texture vs
the rest, then part vs the rest, then object vs group). Background pixels read "background" at
every scale. The crop's embedding is the normalised sum over pixels of their readings' text
embeddings, pooled with weights (share of the crop)^MASS_POWER, where pixels of "stuff" (the
background and objects marked "stuff": true in the hierarchy, the table) count STUFF_WEIGHT: like
CLIP, a crop is about its main subject more than the clutter around it or the surface it stands on. Hence: a small crop on the lid is nearest "teapot lid", a crop of the whole teapot
"blue teapot", a crop over teapot and mug "tea set"; a very small crop on the red mug or the
red apple reads "red" and cannot tell them apart. Because the rule is in metres, a field that is
not told the physical scale (no scale input, or crop fraction without depth, over cameras at
different distances) cannot reproduce it.

`ReferenceDinoEncoder`: per-pixel feature = an identity vector + a fixed projection of its RGB,
averaged over `stride_px`-sized cells (like a patch encoder). Given the hierarchy, the identity
is part-aware: sqrt(1 - PART_SHARE)·v_object + sqrt(PART_SHARE)·v_part, so two parts of one
object have cosine PART_SHARE = 0.5 and different objects about 0. Real DINO ViT features do
this: they co-segment object parts across images (Amir et al., "Deep ViT Features as Dense
Visual Descriptors", 2021) — a lid is not the body it sits on. An object-only identity (the
instrument before VERSION 2 of DINO) made the regulariser erase parts: through the shared
bottleneck it pulled every point of the teapot to one feature, and the trained field lost the
lid, spout and handle entirely (part localization 48 % with DINO, 61 % without, seed 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from lerf.encoders.base import seeded_unit_vector, stride_from_grid, unit_normalise

BACKGROUND_ID = 0
BACKGROUND_NAME = "background"
SURFACE_NAME = "surface"  # what a too-close crop of an object without an attribute word reads as
CLIP_NAMESPACE = "lerf-reference-clip"
DINO_NAMESPACE = "lerf-reference-dino"
# 3: the canonical phrases' roles; the attribute-less close-up reads "surface" (was "texture").
VERSION = 3  # bump when the embedding rule changes (it is part of the feature-cache key)
# LERF's canonical phrases (§3.4) and what each leans towards (module docstring): "stuff" towards
# the readings of stuff pixels (background, the stuff objects' names, "surface"), "texture"
# towards "surface".
CANONICAL_ROLES = {"object": (), "things": (), "stuff": (BACKGROUND_NAME, SURFACE_NAME, "<stuff objects>"),
                   "texture": (SURFACE_NAME,)}
ROLE_LEAN = 1.0  # weight of a canonical phrase's lean beside its own direction (weight 1)

RHO, RHO_GENERIC = 0.2, 0.8  # squared weight of the shared direction: ordinary texts, generic phrases
HEAD_WEIGHT, MODIFIER_WEIGHT = 0.8, 0.6  # word weights beside the phrase's own direction (weight 1)
ALPHA = 0.35  # below ALPHA x its size a thing is too close to recognise: texture
SOFTNESS = 0.15  # width of each transition in ln(crop size)
GROUP_MIN_COVER = 0.015  # a member counts as covered when it fills this fraction of the crop
STUFF_WEIGHT = 0.1  # salience of a background / table pixel relative to an object pixel
MASS_POWER = 2.0  # a crop's readings are pooled with weights (share of the crop)^MASS_POWER
PART_SHARE = 0.5  # DINO: squared weight of the part's own vector beside its object's
DINO_VERSION = 2  # 1: object identity only; 2: part-aware identity (with a hierarchy)
LEVELS = ("texture", "part", "object", "group")


def gram_schmidt(vectors: list[Tensor]) -> Float[Tensor, "d k"]:
    """Orthonormal columns spanning `vectors` in order (QR in float64), column k the part of
    vector k orthogonal to the earlier ones, with vector k's sign.

    Example: [(1, 0), (1, 1)] -> columns (1, 0) and (0, 1).
    """
    q, r = torch.linalg.qr(torch.stack([v.double() for v in vectors], dim=1))
    return (q * torch.sign(torch.diagonal(r))).float()  # fix QR's sign freedom


def canonical_text(text: str) -> str:
    """Case and surrounding spaces do not change a name: "Red Mug " == "red mug"."""
    return " ".join(text.strip().lower().split())


@dataclass(frozen=True)
class PartReading:
    """How pixels of one part id read at each level (names) and where the levels change (metres)."""
    texture: str
    part: Optional[str]
    object: str
    group: Optional[str]
    part_size_m: float  # the named part's size; the object's for an unnamed part
    object_size_m: float
    object_id: int
    stuff: bool = False  # background or a surface (the table): less salient than objects


def part_readings(hierarchy: dict) -> dict[int, PartReading]:
    """Parse labels.json's "hierarchy" (see lerf.demo.scene) into one reading per part id.

    Example: {"parts": {"5": {"name": "teapot lid", "object": 3, "size_m": 0.088}},
              "objects": {"3": {"name": "blue teapot", "size_m": 0.267, "group": "tea set"}}}
    -> {5: PartReading("blue", "teapot lid", "blue teapot", "tea set", 0.088, 0.267, 3)}.
    """
    objects = {int(k): v for k, v in hierarchy["objects"].items()}
    out = {BACKGROUND_ID: PartReading(BACKGROUND_NAME, None, BACKGROUND_NAME, None, math.inf, math.inf, 0, True)}
    for pid, part in hierarchy["parts"].items():
        obj = objects[int(part["object"])]
        name = canonical_text(obj["name"])
        words = name.split()
        out[int(pid)] = PartReading(
            texture=" ".join(words[:-1]) or SURFACE_NAME,
            part=canonical_text(part["name"]) if part.get("name") else None,
            object=name, group=canonical_text(obj["group"]) if obj.get("group") else None,
            part_size_m=float(part["size_m"]), object_size_m=float(obj["size_m"]), object_id=int(part["object"]),
            stuff=bool(obj.get("stuff", False)))
    return out


class ReferenceClipEncoder:
    """Test instrument (see module docstring).

    `hierarchy`: labels.json's "hierarchy" (part id -> name, object, size; object id -> name,
    size, group). `generic_phrases`: texts embedded near the shared direction (LERF's canonical
    phrases). Crops come with part-id masks (`ids`) and per-pixel crop sizes in metres (`crop_m`).
    """

    def __init__(self, hierarchy: dict, generic_phrases: Sequence[str] = ("object", "things", "stuff", "texture"),
                 dim: int = 128, device: str | torch.device = "cpu", input_px: int = 32):
        self.hierarchy = hierarchy
        self.readings = part_readings(hierarchy)
        # LERF's canonical phrases are always generic, so the supervision does not change with the
        # query's canonical phrases (experiment=one_canonical re-scores the same pyramid).
        self.generic = tuple(dict.fromkeys([*CANONICAL_ROLES, *(canonical_text(t) for t in generic_phrases)]))
        self.embed_dim = dim
        self.device = torch.device(device)
        # Crops are resized to this before reading: ids and sizes are resampled nearest-neighbour,
        # so the pixel counts are those of the resized crop. Small keeps the pyramid cheap.
        self.input_px = input_px
        self.name = f"reference_clip_{dim}"
        self._common = seeded_unit_vector("<common>", dim, CLIP_NAMESPACE)
        self._directions = self._vocabulary_directions()
        self._build_tables()

    # -- text ----------------------------------------------------------------------------------
    def _vocabulary(self) -> list[str]:
        names = {SURFACE_NAME, BACKGROUND_NAME, *self.generic}
        for r in self.readings.values():
            names |= {n for n in (r.texture, r.part, r.object, r.group) if n}
        return sorted(names | {w for n in names for w in n.split()})

    def _vocabulary_directions(self) -> dict[str, Tensor]:
        """Orthonormal content directions (orthogonal to the shared one) for the vocabulary."""
        vocab = self._vocabulary()
        if len(vocab) + 1 > self.embed_dim:
            raise ValueError(f"dim {self.embed_dim} is too small for a vocabulary of {len(vocab)} names")
        q = gram_schmidt([self._common] + [self._random_direction(t) for t in vocab])
        return {t: q[:, k + 1] for k, t in enumerate(vocab)}

    def _random_direction(self, token: str) -> Tensor:
        v = seeded_unit_vector(token, self.embed_dim, CLIP_NAMESPACE)
        v = v - (v @ self._common) * self._common
        return v / v.norm()

    def _direction(self, token: str) -> Tensor:
        return self._directions[token] if token in self._directions else self._random_direction(token)

    def role_names(self, phrase: str) -> list[str]:
        """The readings a canonical phrase leans towards (CANONICAL_ROLES); [] for other texts.
        Example: "stuff" on the demo -> ["background", "surface", "table"]."""
        names = []
        for name in CANONICAL_ROLES.get(phrase, ()):
            names += [r.object for r in self.readings.values() if r.stuff and r.object_id] \
                if name == "<stuff objects>" else [name]
        return list(dict.fromkeys(names))

    def text_vector(self, text: str) -> Float[Tensor, "d"]:
        """The embedding of one text (module docstring: shared part + composed content)."""
        text = canonical_text(text)
        words = text.split()
        content = self._direction(text)
        if len(words) > 1:
            content = content + MODIFIER_WEIGHT * sum(self._direction(w) for w in words[:-1]) \
                + HEAD_WEIGHT * self._direction(words[-1])
        lean = self.role_names(text)
        if lean:
            u = sum(self.text_vector(n) for n in lean)
            u = u - (u @ self._common) * self._common  # their content, off the shared direction
            content = content / content.norm() + ROLE_LEAN * u / u.norm()
        rho = RHO_GENERIC if text in self.generic else RHO
        return math.sqrt(rho) * self._common + math.sqrt(1 - rho) * content / content.norm()

    def encode_text(self, texts: list[str]) -> Float[Tensor, "n d"]:
        return torch.stack([self.text_vector(t) for t in texts]).to(self.device)

    # -- crops ---------------------------------------------------------------------------------
    def _build_tables(self) -> None:
        """Per part id: embedding row of each level's name (-1 if absent), ln of the two size
        thresholds, object id and group index (-1 if none)."""
        names = sorted({n for r in self.readings.values() for n in (r.texture, r.part, r.object, r.group) if n})
        row = {n: k for k, n in enumerate(names)}
        self._names = names
        self._table = torch.stack([self.text_vector(n) for n in names])
        groups = sorted({r.group for r in self.readings.values() if r.group})
        self._groups = groups
        n_ids = max(self.readings) + 1
        self._known = torch.zeros(n_ids, dtype=torch.bool)
        self._rows = torch.full((n_ids, len(LEVELS)), -1, dtype=torch.long)
        self._ln_part = torch.full((n_ids,), math.inf)
        self._ln_object = torch.full((n_ids,), math.inf)
        self._object = torch.zeros(n_ids, dtype=torch.long)
        self._group = torch.full((n_ids,), -1, dtype=torch.long)
        self._salience = torch.ones(n_ids)
        for pid, r in self.readings.items():
            self._known[pid] = True
            self._salience[pid] = STUFF_WEIGHT if r.stuff else 1.0
            for k, n in enumerate((r.texture, r.part, r.object, r.group)):
                if n:
                    self._rows[pid, k] = row[n]
            self._ln_part[pid] = math.log(r.part_size_m)
            self._ln_object[pid] = math.log(r.object_size_m)
            self._object[pid] = r.object_id
            self._group[pid] = groups.index(r.group) if r.group else -1
        n_obj = int(self._object.max()) + 1
        self._members = torch.zeros(len(groups), n_obj, dtype=torch.bool)  # group x object id
        for r in self.readings.values():
            if r.group:
                self._members[groups.index(r.group), r.object_id] = True

    def cache_key(self) -> dict:
        return {"encoder": "reference_clip", "version": VERSION, "dim": self.embed_dim, "input_px": self.input_px,
                "hierarchy": self.hierarchy, "generic_phrases": list(self.generic),
                "constants": [RHO, RHO_GENERIC, HEAD_WEIGHT, MODIFIER_WEIGHT, ALPHA, SOFTNESS, GROUP_MIN_COVER,
                              STUFF_WEIGHT, MASS_POWER, ROLE_LEAN]}

    def group_covered(self, ids: Int[Tensor, "n s s"]) -> Float[Tensor, "n g"]:
        """1 where a crop covers >= 2 members of a group (each >= GROUP_MIN_COVER of its pixels).

        Example: a crop half teapot, half mug -> 1 for "tea set"; all teapot -> 0.
        """
        n = ids.shape[0]
        objects = self._object[ids].flatten(1)  # object id per pixel
        n_obj = self._members.shape[1]
        cover = torch.zeros(n, n_obj).scatter_add_(1, objects, torch.ones_like(objects, dtype=torch.float32))
        cover = cover / objects.shape[1]
        members = ((cover[:, None, :] >= GROUP_MIN_COVER) & self._members[None]).sum(-1)
        return (members >= 2).float()

    def level_weights(self, ids: Int[Tensor, "n s s"], crop_m: Float[Tensor, "n s s"]) -> Float[Tensor, "n s s 4"]:
        """Per pixel, the weight of each level (texture, part, object, group); rows sum to 1."""
        ln_s = torch.log(crop_m.float().clamp_min(1e-9))
        has_part = self._rows[ids, 1] >= 0
        ln_first = torch.where(has_part, self._ln_part[ids], self._ln_object[ids]) + math.log(ALPHA)
        above_texture = torch.sigmoid((ln_s - ln_first) / SOFTNESS)
        above_part = torch.where(has_part, torch.sigmoid((ln_s - self._ln_part[ids]) / SOFTNESS), 1.0)
        covered = torch.cat([self.group_covered(ids), torch.zeros(len(ids), 1)], 1)  # n (g + 1): last = no group
        group = torch.where(self._group[ids] >= 0, self._group[ids], len(self._groups))
        in_group = covered.gather(1, group.flatten(1)).view_as(group)
        above_object = in_group * torch.sigmoid((ln_s - self._ln_object[ids]) / SOFTNESS)
        w = torch.stack([1 - above_texture, above_texture * (1 - above_part),
                         above_texture * above_part * (1 - above_object),
                         above_texture * above_part * above_object], dim=-1)
        background = ids == BACKGROUND_ID  # reads "background" at every scale (its object level)
        return torch.where(background[..., None], torch.tensor([0.0, 0.0, 1.0, 0.0]), torch.nan_to_num(w))

    def encode_crops(
        self, rgb: Float[Tensor, "n 3 s s"], ids: Optional[Int[Tensor, "n s s"]] = None,
        crop_m: Optional[Float[Tensor, "n s s"]] = None,
    ) -> Float[Tensor, "n d"]:
        if ids is None or crop_m is None:
            raise ValueError("ReferenceClipEncoder needs part-id masks (ids=...) and crop sizes in metres "
                             "(crop_m=...); it is a test instrument for the synthetic scene, not an image model")
        ids = ids.long().cpu()
        known = (ids >= 0) & (ids < len(self._known))
        if not bool(known.all()) or not bool(self._known[ids[known]].all()):
            bad = sorted(set(ids.unique().tolist()) - set(self.readings))
            raise ValueError(f"part ids {bad} are not in the hierarchy (known: {sorted(self.readings)})")
        crop_m = torch.where(ids == BACKGROUND_ID, 1.0, crop_m.float().cpu())  # background depth is inf
        w = (self.level_weights(ids, crop_m) * self._salience[ids][..., None]).flatten(1, 2)  # n p 4
        rows = self._rows[ids].flatten(1, 2)  # n p 4
        n, k = ids.shape[0], len(self._names)
        flat = (rows.clamp_min(0) + k * torch.arange(n)[:, None, None]).flatten()
        mass = torch.zeros(n * k).index_add_(0, flat, torch.where(rows >= 0, w, 0.0).flatten()).view(n, k)
        share = mass / mass.sum(-1, keepdim=True).clamp_min(1e-12)
        return unit_normalise(share.pow(MASS_POWER) @ self._table).to(self.device)


class ReferenceDinoEncoder:
    """Test instrument (see module docstring): DINO-like dense features from ids and colour.

    feature(pixel) = v_id + P·(rgb - 0.5), where P is a fixed seeded dim x 3 matrix and v_id the
    pixel's identity (zero when no ids are given): without a hierarchy `ids` are object ids and
    v_id a seeded unit vector per object; with one (labels.json's "hierarchy") `ids` are part ids
    and v_id = sqrt(1 - PART_SHARE)·v_object + sqrt(PART_SHARE)·v_part, a unit vector. Cells
    average the pixels they cover: an image of h x w pixels gives round(h/stride) x
    round(w/stride) cells.
    """

    def __init__(self, dim: int = 64, stride_px: int = 4, device: str | torch.device = "cpu",
                 hierarchy: Optional[dict] = None):
        self.feature_dim = dim
        self.nominal_stride_px = stride_px
        self.device = torch.device(device)
        self.hierarchy = hierarchy
        self.name = f"reference_dino_{dim}"
        cols = [seeded_unit_vector(f"rgb{c}", dim, DINO_NAMESPACE) for c in range(3)]
        self._rgb_proj = torch.stack(cols, dim=1)  # (dim, 3)
        self._part_object = {pid: r.object_id for pid, r in part_readings(hierarchy).items()} if hierarchy else None
        self._orthonormal = self._orthonormal_identities() if hierarchy else {}

    def _orthonormal_identities(self) -> dict[str, Tensor]:
        """Exactly orthonormal object and part vectors (QR of the seeded ones), so that the
        cosines in the class docstring hold exactly, not just on average."""
        tokens = [f"id{o}" for o in sorted(set(self._part_object.values()))] + [f"part{p}" for p in sorted(self._part_object)]
        if len(tokens) > self.feature_dim:
            raise ValueError(f"dim {self.feature_dim} is too small for {len(tokens)} object and part identities")
        q = gram_schmidt([seeded_unit_vector(t, self.feature_dim, DINO_NAMESPACE) for t in tokens])
        return {t: q[:, k] for k, t in enumerate(tokens)}

    def id_vector(self, object_id: int) -> Float[Tensor, "d"]:
        token = f"id{object_id}"
        return self._orthonormal.get(token, seeded_unit_vector(token, self.feature_dim, DINO_NAMESPACE))

    def part_vector(self, part_id: int) -> Float[Tensor, "d"]:
        """Identity of a part id (needs the hierarchy). Example: two parts of the teapot ->
        cosine PART_SHARE, parts of different objects 0; the background (id 0) is its own object."""
        if self._part_object is None or part_id not in self._part_object:
            raise ValueError(f"part id {part_id} is not in the hierarchy given to ReferenceDinoEncoder")
        own = self._orthonormal[f"part{part_id}"]
        return math.sqrt(1 - PART_SHARE) * self.id_vector(self._part_object[part_id]) + math.sqrt(PART_SHARE) * own

    def _identity_table(self, ids: Int[Tensor, "n h w"]) -> Float[Tensor, "k d"]:
        """Row k: the identity vector of id k, for every id up to the largest in `ids`."""
        n_ids = int(ids.max()) + 1
        if self._part_object is None:
            return torch.stack([self.id_vector(k) for k in range(n_ids)])
        bad = sorted(set(ids.unique().tolist()) - set(self._part_object))
        if bad:
            raise ValueError(f"part ids {bad} are not in the hierarchy (known: {sorted(self._part_object)})")
        return torch.stack([self.part_vector(k) if k in self._part_object else torch.zeros(self.feature_dim)
                            for k in range(n_ids)])

    def cache_key(self) -> dict:
        key = {"encoder": "reference_dino", "dim": self.feature_dim, "stride_px": self.nominal_stride_px}
        if self.hierarchy is not None:
            key.update(version=DINO_VERSION, part_share=PART_SHARE, hierarchy=self.hierarchy)
        return key

    def grid_hw(self, height: int, width: int) -> tuple[int, int]:
        s = self.nominal_stride_px
        return max(1, round(height / s)), max(1, round(width / s))

    def stride_px(self, height: int, width: int) -> tuple[float, float]:
        return stride_from_grid(height, width, self.grid_hw(height, width))

    def encode_dense(
        self, rgb: Float[Tensor, "n 3 h w"], ids: Optional[Int[Tensor, "n h w"]] = None
    ) -> Float[Tensor, "n gh gw d"]:
        rgb = rgb.float().cpu()
        feats = torch.einsum("dc,nchw->ndhw", self._rgb_proj, rgb - 0.5)
        if ids is not None:
            ids = ids.long().cpu()
            feats = feats + self._identity_table(ids)[ids].permute(0, 3, 1, 2)
        # Adaptive pooling: cell i averages rows [floor(i·h/gh), ceil((i+1)·h/gh)).
        pooled = F.adaptive_avg_pool2d(feats, self.grid_hw(*rgb.shape[-2:]))
        return pooled.permute(0, 2, 3, 1).contiguous().to(self.device)
