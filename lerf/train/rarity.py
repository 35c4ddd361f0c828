"""Rarity sampling of training rays (ours, `trainer.ray_sampling=rarity`; LERF samples uniformly).

Why: a part that covers 0.3 % of the training pixels (the demo teapot's spout) is read by about
one ray in 2000, and by fewer still at a part-sized crop. The language field's shared CLIP head
is fitted to the batch mean, where such a target is averaged away; more rays per batch leave its
share unchanged. This sampler raises the share of rare *appearances* without any label:

1. the pyramid's smallest crops of the training images (level 0: the finest tiles, 5 % of the
   image height by default) are grouped by cosine k-means on their CLIP embeddings;
2. a `share` of each batch picks a cluster uniformly, a tile uniformly within it, and a pixel
   uniformly within the tile; the rest of the batch stays uniform over all pixels.

So each of the k appearance clusters gets 1/k of the rarity rays, however few tiles it has.
Example: 32 clusters, share 0.5: a cluster of 40 tiles among 16,000 (0.25 %) receives
0.5/32 + 0.5 x 0.0025 = 1.7 % of the rays instead of 0.25 %. With real CLIP the clusters are
whatever the encoder tells apart; nothing here reads the demo's labels.

The emphasis is meant for the language field only. Left as it is, it also changes what the
radiance field fits: rare surfaces count several times over in the photometric loss and the
common ones less, which cost 1.4-1.8 dB of held-out PSNR on demo seed 1 (docs/history.md, "thin parts").
`RaritySampler.relative_density` gives each pixel's draw probability relative to a uniform
draw, from which the trainer weights each ray's RGB, interlevel and distortion losses by
uniform / mixture probability (importance sampling): the radiance field's objective is then, in
expectation, that of LERF's uniform rays (`trainer.rarity_unbiased_nerf`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


def farthest_first_seeds(x: Float[Tensor, "n d"], k: int, generator: torch.Generator) -> Float[Tensor, "k d"]:
    """k-means++ seeding on unit rows: each next seed drawn with probability proportional to the
    squared cosine distance to the nearest seed so far. A rare, distinct appearance gets a seed
    of its own, where seeds drawn uniformly would nearly all land on the common surfaces."""
    seeds = [x[torch.randint(x.shape[0], (1,), generator=generator)]]
    nearest = 1 - (x @ seeds[0].T).squeeze(-1)
    for _ in range(k - 1):
        weight = nearest.clamp(min=0) ** 2
        if float(weight.sum()) <= 0:  # fewer distinct rows than k
            break
        seeds.append(x[torch.multinomial(weight, 1, generator=generator)])
        nearest = torch.minimum(nearest, 1 - (x @ seeds[-1].T).squeeze(-1))
    return torch.cat(seeds)


def spherical_kmeans(x: Float[Tensor, "n d"], k: int, iters: int, generator: torch.Generator
                     ) -> Int[Tensor, " n"]:
    """Cluster index of each row of `x` under cosine k-means (unit centroids, Lloyd iterations
    from k-means++ seeds drawn with `generator`; an emptied cluster keeps its centroid)."""
    x = F.normalize(x.float(), dim=-1)
    centroids = farthest_first_seeds(x, min(k, x.shape[0]), generator)
    k = centroids.shape[0]
    labels = torch.zeros(x.shape[0], dtype=torch.long)
    for _ in range(iters):
        labels = (x @ centroids.T).argmax(-1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        filled = torch.bincount(labels, minlength=k) > 0
        centroids[filled] = F.normalize(sums[filled], dim=-1)
    return labels


def finest_tiles(pyramid, image_idx: Sequence[int]) -> Float[Tensor, "n d"]:
    """Level-0 embeddings of the images `image_idx`, rows ordered image, tile row, tile column."""
    level = pyramid.levels[0]
    cells = level.cells_per_image
    rows = np.concatenate([np.arange(i * cells, (i + 1) * cells) for i in image_idx])  # level 0 starts at row 0
    feats = pyramid.features  # a memmap reads only these rows; a device tensor gathers them there
    picked = feats[torch.from_numpy(rows)] if isinstance(feats, Tensor) else torch.from_numpy(np.asarray(feats[rows]))
    return picked.float().cpu()


class RaritySampler:
    """Pixels drawn cluster-uniformly over the finest tiles of the training images."""

    def __init__(self, pyramid, train_idx: Sequence[int], clusters: int, seed: int, iters: int = 20):
        level = pyramid.levels[0]
        self.crop_px = level.crop_px
        self.tops = torch.tensor(level.tops)
        self.lefts = torch.tensor(level.lefts)
        self.train_idx = torch.tensor(list(train_idx), dtype=torch.long)
        labels = spherical_kmeans(finest_tiles(pyramid, train_idx), clusters, iters,
                                  torch.Generator().manual_seed(seed))
        # Tiles sorted by cluster: cluster c owns tiles order[start[c] : start[c] + count[c]].
        self.order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels)
        self.count = counts[counts > 0]
        self.start = (torch.cumsum(counts, 0) - counts)[counts > 0]

    @property
    def num_clusters(self) -> int:
        return len(self.count)

    def cluster_sizes(self) -> Int[Tensor, " k"]:
        return self.count.clone()

    def tile_probabilities(self) -> Float[Tensor, " t"]:
        """Probability that one `sample` draw picks each tile (image-major order): 1 / (k x size
        of the tile's cluster). Sums to 1."""
        prob = torch.zeros(len(self.order), dtype=torch.float64)
        for start, count in zip(self.start.tolist(), self.count.tolist()):
            prob[self.order[start:start + count]] = 1.0 / (self.num_clusters * count)
        return prob

    def relative_density(self, height: int, width: int) -> Float[Tensor, "i h w"]:
        """How many times more likely `sample` draws each pixel of the training images (in
        train_idx order) than a draw uniform over all their pixels: 1 where it matches, 0 where
        no tile covers the pixel. Overlapping tiles add up. Mean over all pixels 1.

        Example: 2 images of 4 x 4 pixels, four 2 x 2 tiles each, one cluster of a single tile
        and one of the other 7: that tile's 4 pixels have density 0.5 / 4 per pixel against a
        uniform 1 / 32, i.e. 4; the other 28 pixels (0.5 / 7) / 4 / (1 / 32) = 4 / 7.
        """
        rows, cols, c = len(self.tops), len(self.lefts), self.crop_px
        tiles = self.tile_probabilities().reshape(len(self.train_idx), rows, cols) / (c * c)
        density = torch.zeros(len(self.train_idx), height, width, dtype=torch.float64)
        for a, top in enumerate(self.tops.tolist()):
            for b, left in enumerate(self.lefts.tolist()):
                density[:, top:top + c, left:left + c] += tiles[:, a, b, None, None]
        return (density * density[0].numel() * len(self.train_idx)).float()

    def sample(self, n: int, generator: torch.Generator
               ) -> tuple[Int[Tensor, " n"], Int[Tensor, " n"], Int[Tensor, " n"]]:
        """(image index into the scene, row, column) of `n` pixels."""
        c = torch.randint(self.num_clusters, (n,), generator=generator)
        within = (torch.rand(n, generator=generator) * self.count[c]).long().clamp(max=self.count[c] - 1)
        tile = self.order[self.start[c] + within]
        per_image = len(self.tops) * len(self.lefts)
        img, cell = tile // per_image, tile % per_image
        top, left = self.tops[cell // len(self.lefts)], self.lefts[cell % len(self.lefts)]
        row = top + torch.randint(self.crop_px, (n,), generator=generator)
        col = left + torch.randint(self.crop_px, (n,), generator=generator)
        return self.train_idx[img], row, col
