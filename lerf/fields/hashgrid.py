"""Multiresolution hash grid encoding (Instant-NGP, Müller et al. 2022, §3).

Three backends compute the same function of (points, table):

* ``torch``  -- this file: vectorised over points, levels and the 8 cell corners at once, with a
  custom autograd Function whose backward scatters straight into the table gradient. Runs
  anywhere and is the reference the fast paths are tested against.
* ``triton`` -- ``hashgrid_triton.py``: one fused kernel for forward, one for backward (CUDA only).
* ``tcnn``   -- ``hashgrid_tcnn.py``: tiny-cuda-nn's ``HashGrid``. Same hyper-parameters, but tcnn
  aligns its grid differently (vertices at ``x * (scale - 1) + 0.5``), so its values and its
  parameter layout are NOT interchangeable with the other two.

``hashgrid_reference`` is a per-point Python loop used only by the tests.

Conventions (all from Instant-NGP §3, with nerfstudio's torch ``HashEncoding`` grid alignment):
level ``l`` has resolution ``floor(base * b**l)`` with ``b = exp((ln max - ln base) / (L - 1))``;
its vertices sit at integer coordinates ``0..res`` of ``x * res``; a level whose ``(res + 1)**3``
vertices fit in ``2**log2_hashmap_size`` entries is indexed densely (x fastest), the others by the
spatial hash ``(x * 1) ^ (y * 2654435761) ^ (z * 805459861) mod 2**log2_hashmap_size``.
"""
from __future__ import annotations

import importlib
import logging
import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "triton", "tcnn")
# Instant-NGP §3, eq. 4: one prime per axis, 1 for x so that a dense run of x stays coherent.
HASH_PRIMES = (1, 2654435761, 805459861)
# Instant-NGP §4: features are initialised from U(-1e-4, 1e-4).
INIT_SCALE = 1e-4


# --------------------------------------------------------------------------------------------
# Level layout: where each level lives in the one shared table
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Torch backend
# --------------------------------------------------------------------------------------------
def _axis_terms(cell: Int[Tensor, "n levels 3"], res: Int[Tensor, "levels"], hashed: bool,
                log2_hashmap_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Each axis' contribution to a corner's row, for the lower (0) and upper (1) corner.

    A corner's row is ``tx[bx] op ty[by] op tz[bz]`` with op = ``+`` (dense) or ``^`` (hash). The
    hash is masked per axis *before* XOR-ing: the low bits of an XOR are the XOR of the low bits,
    so int32 holds everything after this point (half the memory traffic of int64).
    """
    corners = torch.stack([cell, cell + 1], dim=-1)  # [n, levels, 3, 2]
    if hashed:
        primes = torch.tensor(HASH_PRIMES, dtype=torch.int64, device=cell.device)
        terms = (corners * primes[:, None]) & (2**log2_hashmap_size - 1)
    else:
        side = (res + 1)[:, None]
        strides = torch.cat([torch.ones_like(side), side, side * side], dim=1)  # [levels, 3]
        terms = corners * strides[..., None]
    terms = terms.to(torch.int32)
    return terms[:, :, 0], terms[:, :, 1], terms[:, :, 2]


def _group_corners(x: Float[Tensor, "n 3"], layout: LevelLayout, levels: range
                   ) -> tuple[Int[Tensor, "n group 8"], Float[Tensor, "n group 8"]]:
    """Rows and trilinear weights of the 8 corners, for a run of levels of one kind.

    Corner ``c`` has bits ``(bx, by, bz) = (c & 1, c >> 1 & 1, c >> 2 & 1)``.
    """
    dev = x.device
    res = torch.tensor([layout.resolution[l] for l in levels], dtype=torch.int64, device=dev)
    pos = x[:, None, :] * res.to(x.dtype)[:, None]  # [n, group, 3]
    # min(): a point at exactly 1.0 falls in the last cell (weight 1 on its upper corner).
    cell = torch.minimum(pos.detach().floor().to(torch.int64), (res - 1)[:, None])
    frac = pos - cell.to(x.dtype)  # differentiable in x; the cell is piecewise constant

    hashed = layout.hashed[levels.start]
    tx, ty, tz = _axis_terms(cell, res, hashed, layout.log2_hashmap_size)
    combine = torch.bitwise_xor if hashed else torch.add
    rows = combine(combine(tz[..., :, None, None], ty[..., None, :, None]), tx[..., None, None, :])
    offset = torch.tensor([layout.offset[l] for l in levels], dtype=torch.int32, device=dev)
    rows = rows.reshape(*rows.shape[:2], 8) + offset[:, None]

    wx, wy, wz = (torch.stack([1 - frac[..., a], frac[..., a]], dim=-1) for a in range(3))
    weights = (wz[..., :, None, None] * wy[..., None, :, None] * wx[..., None, None, :])
    return rows, weights.reshape(*weights.shape[:2], 8)


def corner_rows_and_weights(x: Float[Tensor, "n 3"], layout: LevelLayout
                            ) -> tuple[Int[Tensor, "n levels 8"], Float[Tensor, "n levels 8"]]:
    """Table rows (int32) and trilinear weights of every level's 8 cell corners.

    Dense and hashed levels are two contiguous runs, each computed in one vectorised pass.
    """
    x = x.clamp(0.0, 1.0)
    runs = [r for r in (range(0, layout.num_dense), range(layout.num_dense, layout.num_levels)) if len(r)]
    parts = [_group_corners(x, layout, r) for r in runs]
    if len(parts) == 1:
        return parts[0]
    return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1)


class _WeightedGather(torch.autograd.Function):
    """``out[n, l, f] = sum_c weights[n, l, c] * table[rows[n, l, c], f]``.

    Why a Function: autograd through ``table[rows]`` would materialise a dense table-sized gradient
    per use and keep the gathered features alive; here backward is one ``index_add_`` into the
    table gradient, and the features are re-gathered only if the weights need a gradient.
    """

    @staticmethod
    def forward(ctx, table: Tensor, rows: Tensor, weights: Tensor) -> Tensor:
        n, levels, _ = rows.shape
        feats = table.index_select(0, rows.reshape(-1)).view(n, levels, 8, table.shape[1])
        ctx.save_for_backward(table, rows, weights)
        return torch.einsum("nlc,nlcf->nlf", weights, feats)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        table, rows, weights = ctx.saved_tensors
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            # per corner: d out[n,l,f] / d table[row, f] = weight
            contrib = weights[..., None] * grad_out[:, :, None, :]  # [n, levels, 8, f]
            grad_table = torch.zeros_like(table)
            grad_table.index_add_(0, rows.reshape(-1), contrib.reshape(-1, table.shape[1]))
        if ctx.needs_input_grad[2]:
            n, levels, _ = rows.shape
            feats = table.index_select(0, rows.reshape(-1)).view(n, levels, 8, table.shape[1])
            grad_weights = torch.einsum("nlf,nlcf->nlc", grad_out, feats)
        return grad_table, None, grad_weights


def hashgrid_torch(x: Float[Tensor, "n 3"], table: Float[Tensor, "rows f"],
                   layout: LevelLayout) -> Float[Tensor, "n out_dim"]:
    """Hash grid encoding of points in [0, 1]^3 (outside points are clamped), vectorised torch.

    Output column ``l * f + k`` is feature ``k`` of level ``l``. Differentiable in the table and
    in ``x`` (through the trilinear weights).
    """
    rows, weights = corner_rows_and_weights(x, layout)
    out = _WeightedGather.apply(table, rows, weights)
    return out.reshape(x.shape[0], layout.num_levels * layout.features_per_level)


def hashgrid_reference(x: Float[Tensor, "n 3"], table: Float[Tensor, "rows f"],
                       layout: LevelLayout) -> Float[Tensor, "n out_dim"]:
    """Slow, obvious evaluation: one point, one level, one corner at a time. Tests only.

    Written independently of the vectorised path: Python big-int hashing (no masking tricks),
    no broadcasting. Autograd flows to ``table`` and ``x``.
    """
    out = []
    for point in x.clamp(0.0, 1.0):
        feats = []
        for level in range(layout.num_levels):
            res, size = layout.resolution[level], layout.table_size[level]
            pos = point * res
            cell = [min(math.floor(p), res - 1) for p in pos.tolist()]
            frac = [pos[a] - cell[a] for a in range(3)]
            value = 0.0
            for bx in (0, 1):
                for by in (0, 1):
                    for bz in (0, 1):
                        vx, vy, vz = cell[0] + bx, cell[1] + by, cell[2] + bz
                        if layout.hashed[level]:
                            index = (vx * HASH_PRIMES[0] ^ vy * HASH_PRIMES[1] ^ vz * HASH_PRIMES[2]) % size
                        else:
                            index = vx + vy * (res + 1) + vz * (res + 1) ** 2
                        w = ((frac[0] if bx else 1 - frac[0]) * (frac[1] if by else 1 - frac[1])
                             * (frac[2] if bz else 1 - frac[2]))
                        value = value + w * table[layout.offset[level] + index]
            feats.append(value)
        out.append(torch.cat(feats))
    return torch.stack(out)


# --------------------------------------------------------------------------------------------
# Backend choice: once, loudly
# --------------------------------------------------------------------------------------------
def _unavailable_reason(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot run on ``device``, or None if it can."""
    if backend == "torch":
        return None
    if device.type != "cuda":
        return f"it runs only on CUDA devices and the device is '{device}'"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    module, how = {
        "triton": ("triton", "`pip install triton` (a version matching your torch)"),
        "tcnn": ("tinycudann", "`pip install git+https://github.com/NVlabs/tiny-cuda-nn/"
                               "#subdirectory=bindings/torch` on a machine with nvcc"),
    }[backend]
    try:
        importlib.import_module(module)
    except Exception as err:  # ImportError, or a binary built for another CUDA/arch
        return f"`import {module}` failed ({type(err).__name__}: {err}); install it with {how}"
    return None


def resolve_hashgrid_backend(requested: str, device: torch.device | str) -> str:
    """Turn ``auto|torch|triton|tcnn`` into a backend that can run on ``device``.

    ``auto`` prefers tcnn, then triton (both CUDA only), then torch, and logs its pick. An explicit
    backend that cannot run raises ``RuntimeError`` -- never a quiet fallback to a slower path.

    >>> resolve_hashgrid_backend("auto", "cpu")
    'torch'
    """
    device = torch.device(device)
    if requested not in BACKENDS:
        raise ValueError(f"unknown hash grid backend '{requested}'; choose one of {BACKENDS}")
    if requested == "auto":
        reasons = {}
        for candidate in ("tcnn", "triton", "torch"):
            reasons[candidate] = _unavailable_reason(candidate, device)
            if reasons[candidate] is None:
                skipped = "; ".join(f"not {k}: {v}" for k, v in reasons.items() if v)
                log.info("hash grid backend: auto -> %s on %s%s", candidate, device,
                         f" ({skipped})" if skipped else "")
                return candidate
    reason = _unavailable_reason(requested, device)
    if reason is not None:
        raise RuntimeError(f"hash grid backend '{requested}' is unavailable: {reason}. "
                           "Choose backend=auto to use the best available one.")
    return requested


# --------------------------------------------------------------------------------------------
# Module
# --------------------------------------------------------------------------------------------
class HashGrid(nn.Module):
    """Learned multiresolution hash grid: points in [0, 1]^3 -> ``num_levels * features`` features.

    All levels share one parameter ``table`` of shape ``[total rows, features_per_level]`` (level
    ``l`` at rows ``layout.offset[l]`` onward), so an optimizer sees a single tensor. Built on the
    CPU; ``.to(device)`` moves it. ``backend='auto'`` resolves against ``torch.cuda.is_available()``.
    """

    def __init__(self, num_levels: int = 16, features_per_level: int = 2, log2_hashmap_size: int = 19,
                 base_resolution: int = 16, max_resolution: int = 2048, backend: str = "auto"):
        super().__init__()
        self.layout = make_level_layout(num_levels, features_per_level, log2_hashmap_size,
                                        base_resolution, max_resolution)
        self.output_dim = num_levels * features_per_level
        default_device = "cuda" if torch.cuda.is_available() else "cpu"
        self.backend = resolve_hashgrid_backend(backend, default_device)
        if self.backend == "tcnn":
            from lerf.fields.hashgrid_tcnn import make_tcnn_encoding

            self.tcnn_encoding = make_tcnn_encoding(num_levels, features_per_level, log2_hashmap_size,
                                                    base_resolution, max_resolution)
        else:
            table = torch.empty(self.layout.total_size, features_per_level)
            self.table = nn.Parameter(table.uniform_(-INIT_SCALE, INIT_SCALE))
        # Per-level facts as one small tensor that follows .to(device), read by the Triton kernel.
        # Not persistent: it is derived from the constructor arguments.
        self.register_buffer("level_meta", level_meta_tensor(self.layout), persistent=False)

    def forward(self, x: Float[Tensor, "n 3"]) -> Float[Tensor, "n out_dim"]:
        if self.backend == "torch":
            return hashgrid_torch(x, self.table, self.layout)
        if x.device.type != "cuda":
            raise RuntimeError(f"hash grid backend '{self.backend}' needs CUDA tensors, got {x.device}; "
                               "move the model with .to('cuda') or build it with backend='torch'")
        if self.backend == "triton":
            from lerf.fields.hashgrid_triton import hashgrid_triton

            return hashgrid_triton(x, self.table, self.level_meta, self.layout)
        return self.tcnn_encoding(x.clamp(0.0, 1.0)).float()

    def extra_repr(self) -> str:
        lay = self.layout
        return (f"backend={self.backend}, levels={lay.num_levels} ({lay.num_dense} dense), "
                f"features={lay.features_per_level}, resolution={lay.resolution[0]}..{lay.resolution[-1]}, "
                f"log2_hashmap_size={lay.log2_hashmap_size}")


def level_meta_tensor(layout: LevelLayout) -> Int[Tensor, "levels 4"]:
    """Columns: resolution, table size, row offset, hashed (0/1) -- the kernels' view of a layout."""
    return torch.tensor([[r, s, o, int(h)] for r, s, o, h in
                         zip(layout.resolution, layout.table_size, layout.offset, layout.hashed)],
                        dtype=torch.int64)
