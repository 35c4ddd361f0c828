"""Fused Triton kernels for the hash grid (CUDA only; imported only when backend='triton').

Same function, table layout and conventions as ``hashgrid_torch`` (see hashgrid.py), which is
the reference ``tests/test_hashgrid.py::test_triton_matches_torch`` compares against.

One program handles ``BLOCK`` points of one level (grid = point blocks x levels):
* forward: per point, the 8 cell corners' rows, their features (a ``[BLOCK, FP]`` tile, FP = the
  feature count rounded up to a power of two) and the trilinear sum, written straight to the
  output -- no [n, levels, 8] intermediates in global memory;
* backward: the same rows again, ``atomic_add`` of ``weight * grad`` into the table gradient
  (many points share a corner) and, when ``x`` needs a gradient, each level's d/dx written to
  its own slice of a ``[levels, n, 3]`` buffer that is summed afterwards (deterministic).
"""
from __future__ import annotations

from typing import no_type_check

import torch
import triton
import triton.language as tl
from jaxtyping import Float, Int
from torch import Tensor

from lerf.fields.hashgrid_layout import HASH_PRIMES, LevelLayout

# Every kernel function carries @no_type_check: the tests' jaxtyping import hook would otherwise wrap it
# in a runtime type checker, and Triton compiles the Python source of what it is given.
BLOCK = 128  # points per program: 8 corners x FP features x 128 keeps registers modest
NUM_WARPS = 4


@triton.jit
@no_type_check
def _program_block(n, F: tl.constexpr, FP: tl.constexpr, BLOCK: tl.constexpr):
    """This program's level, its ``BLOCK`` point indices (int64) and their mask, the feature lanes
    (FP >= F) and the [BLOCK, FP] mask of real points x real features."""
    level = tl.program_id(1)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    feat = tl.arange(0, FP)
    mask2 = mask[:, None] & (feat[None, :] < F)
    return level, offs, mask, feat, mask2


@triton.jit
@no_type_check
def _level_meta(meta_ptr, level):
    """One row of ``level_meta_tensor``: (resolution, table size, first row, hashed flag)."""
    res = tl.load(meta_ptr + level * 4 + 0)
    size = tl.load(meta_ptr + level * 4 + 1)
    row0 = tl.load(meta_ptr + level * 4 + 2)
    hashed = tl.load(meta_ptr + level * 4 + 3)
    return res, size, row0, hashed


@triton.jit
@no_type_check
def _cell(x_ptr, offs, mask, axis: tl.constexpr, res_f):
    """Scaled position of one axis -> (lower vertex as int64, fraction in [0, 1])."""
    pos = tl.load(x_ptr + offs * 3 + axis, mask=mask, other=0.0) * res_f
    # a point at exactly 1.0 falls in the last cell (weight 1 on its upper vertex)
    cell = tl.minimum(tl.floor(pos), res_f - 1.0)
    return cell.to(tl.int64), pos - cell


@triton.jit
@no_type_check
def _cells(x_ptr, offs, mask, res_f):
    """``_cell`` of the three axes: lower vertices (ix, iy, iz), then fractions (fx, fy, fz)."""
    ix, fx = _cell(x_ptr, offs, mask, 0, res_f)
    iy, fy = _cell(x_ptr, offs, mask, 1, res_f)
    iz, fz = _cell(x_ptr, offs, mask, 2, res_f)
    return ix, iy, iz, fx, fy, fz


@triton.jit
@no_type_check
def _corner(c: tl.constexpr, ix, iy, iz, fx, fy, fz, res, size, row0, hashed,
            P1: tl.constexpr, P2: tl.constexpr):
    """Row and trilinear weight of corner ``c`` (bits bx, by, bz = c & 1, c >> 1 & 1, c >> 2 & 1)."""
    bx: tl.constexpr = c % 2
    by: tl.constexpr = (c // 2) % 2
    bz: tl.constexpr = c // 4
    vx, vy, vz = ix + bx, iy + by, iz + bz
    # Instant-NGP eq. 4 in int64: vertex < 2**12, prime < 2**32, so the products cannot overflow.
    # Hashed tables have a power-of-two size, so "mod size" is "& (size - 1)".
    h = (vx ^ (vy * P1) ^ (vz * P2)) & (size - 1)
    side = res + 1
    d = vx + side * (vy + side * vz)
    row = row0 + tl.where(hashed != 0, h, d)
    wx = fx * bx + (1.0 - fx) * (1 - bx)
    wy = fy * by + (1.0 - fy) * (1 - by)
    wz = fz * bz + (1.0 - fz) * (1 - bz)
    return row, wx, wy, wz


@triton.jit
@no_type_check
def _weight_grads(c: tl.constexpr, wx, wy, wz):
    """d weight / d (fx, fy, fz) of corner ``c``: e.g. (+1 upper, -1 lower vertex) * wy * wz for fx."""
    sx: tl.constexpr = 2 * (c % 2) - 1
    sy: tl.constexpr = 2 * ((c // 2) % 2) - 1
    sz: tl.constexpr = 2 * (c // 4) - 1
    return sx * wy * wz, sy * wx * wz, sz * wx * wy


@triton.jit
@no_type_check
def _hashgrid_fwd_kernel(x_ptr, table_ptr, meta_ptr, out_ptr, n,
                         NUM_LEVELS: tl.constexpr, F: tl.constexpr, FP: tl.constexpr,
                         P1: tl.constexpr, P2: tl.constexpr, BLOCK: tl.constexpr):
    level, offs, mask, feat, mask2 = _program_block(n, F, FP, BLOCK)
    res, size, row0, hashed = _level_meta(meta_ptr, level)
    res_f = res.to(tl.float32)
    ix, iy, iz, fx, fy, fz = _cells(x_ptr, offs, mask, res_f)

    acc = tl.zeros((BLOCK, FP), dtype=tl.float32)
    for c in tl.static_range(8):
        row, wx, wy, wz = _corner(c, ix, iy, iz, fx, fy, fz, res, size, row0, hashed, P1, P2)
        vals = tl.load(table_ptr + row[:, None] * F + feat[None, :], mask=mask2, other=0.0)
        acc += (wx * wy * wz)[:, None] * vals
    tl.store(out_ptr + offs[:, None] * (NUM_LEVELS * F) + level * F + feat[None, :], acc, mask=mask2)


@triton.jit
@no_type_check
def _hashgrid_bwd_kernel(x_ptr, table_ptr, meta_ptr, grad_out_ptr, grad_table_ptr, grad_x_ptr, n,
                         NUM_LEVELS: tl.constexpr, F: tl.constexpr, FP: tl.constexpr,
                         P1: tl.constexpr, P2: tl.constexpr, BLOCK: tl.constexpr,
                         NEED_TABLE: tl.constexpr, NEED_X: tl.constexpr):
    level, offs, mask, feat, mask2 = _program_block(n, F, FP, BLOCK)
    res, size, row0, hashed = _level_meta(meta_ptr, level)
    res_f = res.to(tl.float32)
    ix, iy, iz, fx, fy, fz = _cells(x_ptr, offs, mask, res_f)
    g = tl.load(grad_out_ptr + offs[:, None] * (NUM_LEVELS * F) + level * F + feat[None, :],
                mask=mask2, other=0.0)

    dfx = tl.zeros((BLOCK,), dtype=tl.float32)
    dfy = tl.zeros((BLOCK,), dtype=tl.float32)
    dfz = tl.zeros((BLOCK,), dtype=tl.float32)
    for c in tl.static_range(8):
        row, wx, wy, wz = _corner(c, ix, iy, iz, fx, fy, fz, res, size, row0, hashed, P1, P2)
        ptr_off = row[:, None] * F + feat[None, :]
        if NEED_TABLE:
            tl.atomic_add(grad_table_ptr + ptr_off, (wx * wy * wz)[:, None] * g, mask=mask2)
        if NEED_X:
            dot = tl.sum(tl.load(table_ptr + ptr_off, mask=mask2, other=0.0) * g, axis=1)
            dwx, dwy, dwz = _weight_grads(c, wx, wy, wz)
            dfx += dot * dwx
            dfy += dot * dwy
            dfz += dot * dwz
    if NEED_X:
        # d frac / d x = res; this level's share goes to its own slice: no atomics, fixed order
        base = grad_x_ptr + (level.to(tl.int64) * n + offs) * 3
        tl.store(base + 0, dfx * res_f, mask=mask)
        tl.store(base + 1, dfy * res_f, mask=mask)
        tl.store(base + 2, dfz * res_f, mask=mask)


def _launch_args(layout: LevelLayout, n: int) -> tuple[tuple[int, int], dict]:
    f = layout.features_per_level
    grid = (triton.cdiv(n, BLOCK), layout.num_levels)
    consts = dict(NUM_LEVELS=layout.num_levels, F=f, FP=triton.next_power_of_2(f),
                  P1=HASH_PRIMES[1], P2=HASH_PRIMES[2], BLOCK=BLOCK, num_warps=NUM_WARPS)
    return grid, consts


class _HashGridTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, meta: Tensor, layout: LevelLayout) -> Tensor:
        n = x.shape[0]
        out = torch.empty(n, layout.num_levels * layout.features_per_level, device=x.device, dtype=torch.float32)
        grid, consts = _launch_args(layout, n)
        if n:
            _hashgrid_fwd_kernel[grid](x, table, meta, out, n, **consts)
        ctx.save_for_backward(x, table, meta)
        ctx.layout = layout
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, table, meta = ctx.saved_tensors
        layout, n = ctx.layout, x.shape[0]
        need_x, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_table = torch.zeros_like(table) if need_table else None
        grad_x_levels = x.new_empty(layout.num_levels, n, 3) if need_x else None
        grid, consts = _launch_args(layout, n)
        if n and (need_x or need_table):
            # unused outputs get a harmless stand-in pointer; the constexpr flags skip them
            _hashgrid_bwd_kernel[grid](x, table, meta, grad_out.contiguous(),
                                       grad_table if need_table else table,
                                       grad_x_levels if need_x else x, n,
                                       NEED_TABLE=need_table, NEED_X=need_x, **consts)
        grad_x = grad_x_levels.sum(dim=0) if need_x else None
        return grad_x, grad_table, None, None


def hashgrid_triton(x: Float[Tensor, "n 3"], table: Float[Tensor, "rows f"], level_meta: Int[Tensor, "levels 4"],
                    layout: LevelLayout) -> Float[Tensor, "n out_dim"]:
    """Same as ``hashgrid_torch(x, table, layout)``, as two fused CUDA kernels.

    ``level_meta`` is ``level_meta_tensor(layout)`` on x's device (``HashGrid`` keeps it as a buffer).
    """
    if table.dtype != torch.float32:
        raise TypeError(f"the triton hash grid kernels take a float32 table, got {table.dtype}")
    x = x.clamp(0.0, 1.0).float().contiguous()  # autograd handles the clamp's zero gradient outside
    return _HashGridTriton.apply(x, table.contiguous(), level_meta.contiguous(), layout)
