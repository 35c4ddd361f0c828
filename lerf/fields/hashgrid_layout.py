"""Where each level of a multiresolution hash grid lives in its one shared table (Instant-NGP §3).

Plain facts shared by every backend (torch, Triton, tcnn) and by the tests; no backend code here,
so the backends import this module and never each other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

# Instant-NGP §3, eq. 4: one prime per axis, 1 for x so that a dense run of x stays coherent.
HASH_PRIMES = (1, 2654435761, 805459861)


@dataclass(frozen=True)
class LevelLayout:
    """Per-level facts, as plain ints, shared by every backend and by the reference.

    Level ``l`` owns rows ``offset[l] : offset[l] + table_size[l]`` of the table.
    Dense levels come first because resolution grows with ``l``.
    """

    resolution: tuple[int, ...]
    table_size: tuple[int, ...]
    offset: tuple[int, ...]
    hashed: tuple[bool, ...]
    log2_hashmap_size: int
    features_per_level: int

    @property
    def num_levels(self) -> int:
        return len(self.resolution)

    @property
    def num_dense(self) -> int:
        return self.hashed.count(False)

    @property
    def total_size(self) -> int:
        return self.offset[-1] + self.table_size[-1]


def level_resolutions(num_levels: int, base_resolution: int, max_resolution: int) -> list[int]:
    """Instant-NGP eq. 2-3: ``floor(base * b**l)`` with b the geometric growth factor.

    >>> level_resolutions(4, 16, 128)   # b = 2
    [16, 32, 64, 128]
    >>> level_resolutions(16, 16, 2048)[:6]
    [16, 22, 30, 42, 58, 80]
    """
    if num_levels == 1:
        return [base_resolution]
    growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (num_levels - 1))
    # The 1e-9 keeps exact powers (e.g. 16 * 2**3) from flooring to one less through rounding.
    return [int(math.floor(base_resolution * growth**level * (1 + 1e-9))) for level in range(num_levels)]


def make_level_layout(num_levels: int, features_per_level: int, log2_hashmap_size: int,
                      base_resolution: int, max_resolution: int) -> LevelLayout:
    """Resolution, table size, row offset and dense/hashed choice for every level.

    >>> lay = make_level_layout(3, 2, 12, 8, 32)   # resolutions 8, 16, 32
    >>> lay.table_size, lay.hashed, lay.offset     # 9**3 = 729 fits in 4096; 17**3 does not
    ((729, 4096, 4096), (False, True, True), (0, 729, 4825))
    """
    capacity = 2**log2_hashmap_size
    resolution = level_resolutions(num_levels, base_resolution, max_resolution)
    table_size, hashed, offset, start = [], [], [], 0
    for res in resolution:
        corners = (res + 1) ** 3
        hashed.append(corners > capacity)
        table_size.append(min(corners, capacity))
        offset.append(start)
        start += table_size[-1]
    return LevelLayout(tuple(resolution), tuple(table_size), tuple(offset), tuple(hashed),
                       log2_hashmap_size, features_per_level)


def level_meta_tensor(layout: LevelLayout) -> Int[Tensor, "levels 4"]:
    """Columns: resolution, table size, row offset, hashed (0/1) -- the kernels' view of a layout."""
    return torch.tensor([[r, s, o, int(h)] for r, s, o, h in
                         zip(layout.resolution, layout.table_size, layout.offset, layout.hashed)],
                        dtype=torch.int64)
