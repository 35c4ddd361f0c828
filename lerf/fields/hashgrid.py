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

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from lerf.fields.hashgrid_layout import HASH_PRIMES, LevelLayout, level_meta_tensor, make_level_layout

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "triton", "tcnn")
# Instant-NGP §4: features are initialised from U(-1e-4, 1e-4).
INIT_SCALE = 1e-4


# --------------------------------------------------------------------------------------------
# Torch backend
# --------------------------------------------------------------------------------------------
# Layout: level-major, then corner, then point ([levels, 8, n]). Every elementwise op then
# broadcasts over leading dims and streams over long contiguous runs of points; torch's CPU
# kernels are several times slower when the broadcast dim is a small innermost one ([n, levels, 8]).
# Corner c = 4 bz + 2 by + bx: bit b of an axis picks the lower (0) or upper (1) cell vertex.

def index_dtype(layout: LevelLayout) -> torch.dtype:
    """int32 when every intermediate fits: half the memory traffic of int64 over the 8 n L rows.

    The hash multiplies by primes reduced mod the table size (the low bits of a product depend only
    on the low bits of its factors), so the largest intermediate is ``(res + 1) * 2**log2``; a dense
    level's row is below its table size by construction.

    >>> index_dtype(make_level_layout(16, 2, 19, 16, 2048)), index_dtype(make_level_layout(16, 2, 22, 16, 4096))
    (torch.int32, torch.int64)
    """
    top = layout.resolution[-1] + 1
    largest = max(layout.total_size, top * 2**layout.log2_hashmap_size)
    return torch.int32 if largest < 2**31 else torch.int64


def _corner_rows(cell: Tensor, layout: LevelLayout, levels: range, out: Tensor) -> None:
    """Write the table rows of the 8 corners of ``cell`` ([group, 3, n]) into ``out``
    ([group, 2, 2, 2, n], indexed [level, bz, by, bx, point]).

    A corner's row is ``offset + (tx op ty op tz)``, one term per axis and per lower/upper vertex,
    with op = ``^`` (hashed levels, Instant-NGP eq. 4) or ``+`` (dense levels, x fastest).
    """
    dt, dev = out.dtype, out.device
    vertex = torch.stack([cell, cell + 1], dim=2)  # [group, 3 axes, 2, n]
    if layout.hashed[levels.start]:
        mask = 2**layout.log2_hashmap_size - 1
        primes = torch.tensor([p & mask for p in HASH_PRIMES], dtype=dt, device=dev)
        terms, op = (vertex * primes[:, None, None]) & mask, torch.bitwise_xor
    else:
        side = torch.tensor([layout.resolution[l] + 1 for l in levels], dtype=dt, device=dev)[:, None]
        strides = torch.cat([torch.ones_like(side), side, side * side], dim=1)  # [group, 3]
        terms, op = vertex * strides[:, :, None, None], torch.add
    tx, ty, tz = terms.unbind(dim=1)  # each [group, 2, n]
    op(op(tz[:, :, None, None], ty[:, None, :, None]), tx[:, None, None, :], out=out)
    out += torch.tensor([layout.offset[l] for l in levels], dtype=dt, device=dev)[:, None, None, None, None]


def corner_rows_and_weights(x: Float[Tensor, "n 3"], layout: LevelLayout
                            ) -> tuple[Int[Tensor, "levels 8 n"], Float[Tensor, "levels 8 n"]]:
    """Table rows and trilinear weights of the 8 cell corners, for every level at once.

    Weights are differentiable in ``x``; rows are not (they are piecewise constant).
    """
    res = torch.tensor(layout.resolution, dtype=x.dtype, device=x.device)[:, None, None]
    pos = x.clamp(0.0, 1.0).T.contiguous()[None] * res  # [levels, 3, n]
    # min(): a point at exactly 1.0 falls in the last cell (weight 1 on its upper vertex).
    cell = torch.minimum(pos.detach().floor(), res - 1)
    frac = pos - cell

    lower_upper = torch.stack([1 - frac, frac], dim=2)  # [levels, 3, 2, n]
    wx, wy, wz = lower_upper.unbind(dim=1)
    weights = wz[:, :, None, None] * wy[:, None, :, None] * wx[:, None, None, :]

    cell = cell.to(index_dtype(layout))
    rows = torch.empty(layout.num_levels, 2, 2, 2, x.shape[0], dtype=cell.dtype, device=x.device)
    for run in (range(0, layout.num_dense), range(layout.num_dense, layout.num_levels)):
        if len(run):  # dense levels, then hashed levels: two vectorised passes
            _corner_rows(cell[run.start:run.stop], layout, run, out=rows[run.start:run.stop])
    return rows.flatten(1, 3), weights.flatten(1, 3)


def _row_words(table: Tensor) -> tuple[Tensor, int]:
    """The table as a flat run of 'words', and words per row.

    Pairs of float32/64 features are viewed as one complex number, so a row of 2 features moves as
    one 8/16-byte element: ``index_select``/``index_add_`` on a 1-D tensor take torch's fast path
    (on a [rows, 2] tensor, ``index_add_`` walks a slow per-row loop: 10x slower here).
    """
    if table.shape[1] % 2 == 0 and table.dtype in (torch.float32, torch.float64):
        return torch.view_as_complex(table.view(-1, 2)), table.shape[1] // 2
    return table.view(-1), table.shape[1]


def _word_index(rows: Tensor, words_per_row: int) -> Tensor:
    """Flat word indices of whole rows: ``rows * k + [0..k)``, rows-major."""
    if words_per_row == 1:
        return rows.reshape(-1)
    return (rows[..., None] * words_per_row + torch.arange(words_per_row, device=rows.device)).reshape(-1)


def _gather(table: Tensor, rows: Tensor) -> Tensor:
    """``table[rows]`` as [*rows.shape, features], through the word view."""
    words, k = _row_words(table)
    picked = words.index_select(0, _word_index(rows, k))
    picked = torch.view_as_real(picked) if picked.is_complex() else picked
    return picked.view(*rows.shape, table.shape[1])


def _corner_sum(weights: Float[Tensor, "levels 8 n"], feats: Float[Tensor, "levels 8 n f"]
                ) -> Float[Tensor, "levels n f"]:
    """sum_c weights[:, c, :, None] * feats[:, c], accumulated one corner at a time in place.

    Why not one broadcast product and a sum over c: that materialises a [levels, 8, n, f] product
    and reduces over a strided dim; adding corner by corner into one [levels, n, f] buffer touches
    each gathered feature once (about 4-7x faster on CPU for a batch of NeRF samples).
    """
    out = weights[:, 0, :, None] * feats[:, 0]
    for c in range(1, weights.shape[1]):
        out.addcmul_(weights[:, c, :, None], feats[:, c])
    return out


class _WeightedGather(torch.autograd.Function):
    """``out[l, n, f] = sum_c weights[l, c, n] * table[rows[l, c, n], f]``.

    Why a Function: autograd through ``table[rows]`` materialises a table-sized gradient per use
    and keeps the gathered features alive; here backward is one ``index_add_`` into the table
    gradient, and the features are re-gathered only when the weights need a gradient.
    """

    @staticmethod
    def forward(ctx, table: Tensor, rows: Tensor, weights: Tensor) -> Tensor:
        feats = _gather(table, rows)  # [levels, 8, n, f]
        ctx.save_for_backward(table, rows, weights)
        return _corner_sum(weights, feats)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        table, rows, weights = ctx.saved_tensors
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            # d out[l, n, f] / d table[rows[l, c, n], f] = weights[l, c, n]; written interleaved
            # ([.., f] innermost) so that it lines up with the table's words.
            contrib = weights.new_empty(*weights.shape, table.shape[1])
            for f in range(table.shape[1]):
                torch.mul(weights, grad_out[:, None, :, f], out=contrib[..., f])
            grad_table = torch.zeros_like(table)
            words, k = _row_words(grad_table)
            contrib_words = torch.view_as_complex(contrib.view(-1, 2)) if words.is_complex() else contrib
            words.index_add_(0, _word_index(rows, k), contrib_words.reshape(-1))
        if ctx.needs_input_grad[2]:
            feats = _gather(table, rows)
            grad_weights = sum(grad_out[:, None, :, f] * feats[..., f] for f in range(table.shape[1]))
        return grad_table, None, grad_weights


def hashgrid_torch(x: Float[Tensor, "n 3"], table: Float[Tensor, "rows f"],
                   layout: LevelLayout) -> Float[Tensor, "n out_dim"]:
    """Hash grid encoding of points in [0, 1]^3 (outside points are clamped), vectorised torch.

    Output column ``l * f + k`` is feature ``k`` of level ``l``. Differentiable in the table and
    in ``x`` (through the trilinear weights). Computes in the table's dtype.

    One dense level of resolution 1 (one cell, rows ``x + 2 y + 4 z``), feature = row number:
    a cube corner reads its row, the centre averages all 8, and (1/4, 0, 0) is 3/4 row 0 + 1/4 row 1.

    >>> lay = make_level_layout(1, 1, 3, 1, 1)
    >>> table = torch.arange(8.0)[:, None]
    >>> hashgrid_torch(torch.tensor([[1.0, 1.0, 0.0], [0.5, 0.5, 0.5], [0.25, 0.0, 0.0]]), table, lay)
    tensor([[3.0000],
            [3.5000],
            [0.2500]])
    """
    x = x.to(table.dtype)
    rows, weights = corner_rows_and_weights(x, layout)
    out = _WeightedGather.apply(table.contiguous(), rows, weights)  # [levels, n, f]
    return out.transpose(0, 1).reshape(x.shape[0], layout.num_levels * layout.features_per_level)


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
    CPU; ``.to(device)`` moves it. ``backend`` is already resolved for the device it will run on.
    """

    def __init__(self, num_levels: int = 16, features_per_level: int = 2, log2_hashmap_size: int = 19,
                 base_resolution: int = 16, max_resolution: int = 2048, backend: str = "torch"):
        super().__init__()
        self.layout = make_level_layout(num_levels, features_per_level, log2_hashmap_size,
                                        base_resolution, max_resolution)
        self.output_dim = num_levels * features_per_level
        if backend not in BACKENDS or backend == "auto":
            # The backend is chosen once, against the device the model will run on
            # (`resolve_hashgrid_backend`, called by `lerf.model.build_model`); never guessed here.
            raise ValueError(f"HashGrid needs a resolved backend (torch, triton or tcnn), got '{backend}'; "
                             "call resolve_hashgrid_backend(backend, device) first")
        self.backend = backend
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
