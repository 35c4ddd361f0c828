"""Hash grid: layout facts, torch backend vs the per-point reference, backend choice, fast paths."""
from __future__ import annotations

import importlib.util
import logging
import math

import pytest
import torch

from lerf.fields.hashgrid import (
    HashGrid,
    INIT_SCALE,
    hashgrid_reference,
    hashgrid_torch,
    index_dtype,
    resolve_hashgrid_backend,
)
from lerf.fields.hashgrid_layout import level_resolutions, make_level_layout

# 4 levels at resolution 4, 8, 16, 32 with 2**10 rows per level: 5**3 and 9**3 corners fit (dense),
# 17**3 and 33**3 do not (hashed). Small enough for the per-point reference and gradcheck.
SMALL = dict(num_levels=4, features_per_level=2, log2_hashmap_size=10, base_resolution=4, max_resolution=32)


def _small_layout():
    return make_level_layout(**SMALL)


def _points(n: int, dtype=torch.float64) -> torch.Tensor:
    """Random points plus the awkward ones: corners of the cube, exact vertices of every level
    (k / res lands on a cell boundary), and points outside [0, 1]^3 that must be clamped."""
    gen = torch.Generator().manual_seed(0)
    special = torch.tensor([
        [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5], [0.25, 0.5, 0.75],  # vertices of res 4
        [0.125, 0.375, 1.0], [1 / 16, 3 / 32, 5 / 16], [-0.2, 0.3, 1.4], [2.0, -1.0, 0.5],
    ], dtype=dtype)
    return torch.cat([special, torch.rand(n, 3, generator=gen, dtype=dtype)])


# ---- layout ---------------------------------------------------------------------------------
def test_resolution_schedule_is_geometric_floor():
    assert level_resolutions(4, 16, 128) == [16, 32, 64, 128]  # growth factor exactly 2
    res = level_resolutions(16, 16, 2048)
    growth = math.exp(math.log(2048 / 16) / 15)
    assert res[0] == 16 and res[-1] == 2048
    assert res == [math.floor(16 * growth**l + 1e-6) for l in range(16)]
    assert level_resolutions(1, 16, 2048) == [16]


def test_dense_levels_fit_their_corners_and_hashed_levels_fill_the_table():
    # resolution 7 has 8**3 = 512 = 2**9 corners: exactly fits, so dense; resolution 8 does not.
    lay = make_level_layout(2, 3, 9, 7, 8)
    assert lay.resolution == (7, 8)
    assert lay.hashed == (False, True)
    assert lay.table_size == (512, 512)
    assert lay.offset == (0, 512) and lay.total_size == 1024
    big = make_level_layout(16, 2, 19, 16, 2048)
    assert big.num_dense == 5  # 59**3 <= 2**19 < 81**3
    for res, size, hashed in zip(big.resolution, big.table_size, big.hashed):
        assert size == min((res + 1) ** 3, 2**19) and hashed == ((res + 1) ** 3 > 2**19)
    assert all(b == a + s for a, s, b in zip(big.offset, big.table_size, big.offset[1:]))


# ---- torch backend vs reference -------------------------------------------------------------
def test_torch_backend_matches_per_point_reference():
    lay = _small_layout()
    assert lay.hashed == (False, False, True, True)
    table = torch.randn(lay.total_size, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = _points(64)
    torch.testing.assert_close(hashgrid_torch(x, table, lay), hashgrid_reference(x, table, lay))


def test_int64_index_path_matches_reference():
    # 4097 * 2**20 > 2**31: the masked-prime products no longer fit int32, so rows go int64.
    lay = make_level_layout(1, 1, 20, 4096, 4096)
    assert index_dtype(lay) == torch.int64 and index_dtype(_small_layout()) == torch.int32
    table = torch.randn(lay.total_size, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    x = _points(8)
    torch.testing.assert_close(hashgrid_torch(x, table, lay), hashgrid_reference(x, table, lay))


def test_odd_feature_count_and_float32_match_reference():
    # 3 features cannot be viewed as complex pairs: exercises the plain-float word path.
    lay = make_level_layout(3, 3, 9, 4, 16)
    table0 = torch.randn(lay.total_size, 3, generator=torch.Generator().manual_seed(6))
    x = _points(16, torch.float32)
    results = []
    for fn in (hashgrid_torch, hashgrid_reference):
        table = table0.clone().requires_grad_()
        out = fn(x, table, lay)
        out.square().sum().backward()
        results.append((out, table.grad))
    torch.testing.assert_close(results[0], results[1])


def test_vertex_points_read_exactly_one_table_row():
    lay = make_level_layout(1, 1, 12, 4, 4)  # one dense level, 125 rows, row = x + 5 y + 25 z
    table = torch.arange(125, dtype=torch.float64)[:, None]
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.25, 0.5, 0.0], [1.0, 0.0, 0.75]], dtype=torch.float64)
    expected = torch.tensor([[0.0], [124.0], [1 + 2 * 5], [4 + 0 + 3 * 25]], dtype=torch.float64)
    torch.testing.assert_close(hashgrid_torch(x, table, lay), expected)


def test_gradients_match_autograd_through_reference():
    lay = _small_layout()
    gen = torch.Generator().manual_seed(2)
    table0 = torch.randn(lay.total_size, 2, dtype=torch.float64, generator=gen)
    x0 = _points(24)[2:6].clone()  # inside the cube: clamping has no gradient to compare
    x0 = torch.cat([x0, torch.rand(20, 3, generator=gen, dtype=torch.float64)])
    upstream = torch.randn(x0.shape[0], 8, dtype=torch.float64, generator=gen)

    grads = []
    for fn in (hashgrid_torch, hashgrid_reference):
        table, x = table0.clone().requires_grad_(), x0.clone().requires_grad_()
        (fn(x, table, lay) * upstream).sum().backward()
        grads.append((table.grad, x.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_gradcheck_torch_backend():
    lay = _small_layout()
    gen = torch.Generator().manual_seed(3)
    table = torch.randn(lay.total_size, 2, dtype=torch.float64, generator=gen).requires_grad_()
    # away from cell boundaries, where the encoding is smooth in x
    x = (0.1 + 0.8 * torch.rand(6, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t, p: hashgrid_torch(p, t, lay), (table, x), fast_mode=True)


def test_outside_points_are_clamped():
    lay = _small_layout()
    table = torch.randn(lay.total_size, 2, dtype=torch.float64)
    x = torch.tensor([[-0.5, 0.3, 1.7], [2.0, 2.0, -3.0]], dtype=torch.float64)
    torch.testing.assert_close(hashgrid_torch(x, table, lay), hashgrid_torch(x.clamp(0, 1), table, lay))


# ---- module ---------------------------------------------------------------------------------
def test_module_shape_dtype_init_and_single_parameter():
    torch.manual_seed(0)
    grid = HashGrid(**SMALL, backend="torch")
    params = list(grid.parameters())
    assert grid.backend == "torch" and grid.output_dim == 8
    assert len(params) == 1 and params[0].shape == (grid.layout.total_size, 2)
    assert params[0].abs().max() <= INIT_SCALE and params[0].std() > INIT_SCALE / 4
    out = grid(torch.rand(10, 3))
    assert out.shape == (10, 8) and out.dtype == torch.float32
    out.sum().backward()
    assert params[0].grad is not None and params[0].grad.abs().sum() > 0
    assert set(grid.state_dict()) == {"table"}  # layout is derived, not stored


def test_module_forward_equals_function_on_default_sizes():
    grid = HashGrid(backend="torch")  # 16 levels, 2**19, 16..2048
    assert grid.layout.num_dense == 5
    x = torch.rand(256, 3, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(grid(x), hashgrid_torch(x, grid.table, grid.layout))
    idx = torch.tensor([0, 1, 255])  # spot-check the full size against the reference, a few points
    torch.testing.assert_close(grid(x[idx]), hashgrid_reference(x[idx], grid.table, grid.layout))


def test_grid_fits_a_smooth_field():
    # The table gradient is usable for training: Adam on the table alone fits a smooth target.
    grid = HashGrid(**SMALL, backend="torch")
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(512, 3, generator=gen)
    target = torch.sin(6 * x) @ torch.randn(3, grid.output_dim, generator=gen)
    opt = torch.optim.Adam(grid.parameters(), lr=0.1)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = (grid(x) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


# ---- backend choice -------------------------------------------------------------------------
def test_auto_picks_torch_on_cpu_and_logs(caplog):
    with caplog.at_level(logging.INFO, logger="lerf.fields.hashgrid"):
        assert resolve_hashgrid_backend("auto", "cpu") == "torch"
    assert "auto -> torch" in caplog.text
    assert resolve_hashgrid_backend("torch", torch.device("cpu")) == "torch"


@pytest.mark.parametrize("backend", ["triton", "tcnn"])
def test_explicit_unavailable_backend_raises(backend):
    with pytest.raises(RuntimeError, match=rf"'{backend}' is unavailable: .*CUDA"):
        resolve_hashgrid_backend(backend, "cpu")


def test_unknown_backend_raises():
    with pytest.raises(ValueError, match="unknown hash grid backend 'cuda'"):
        resolve_hashgrid_backend("cuda", "cpu")


def test_module_refuses_an_unresolved_backend():
    # The backend is resolved once against the run's device (build_model); HashGrid never guesses.
    with pytest.raises(ValueError, match="resolved backend"):
        HashGrid(**SMALL, backend="auto")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error path")
def test_cuda_backend_on_cpu_tensors_raises():
    grid = HashGrid(**SMALL, backend="triton")
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        grid(torch.rand(4, 3))


def test_cpu_model_picks_the_torch_backend_whatever_the_machine():
    from lerf.config import ModelConfig
    from lerf.model import SceneGeometry, build_model

    geometry = SceneGeometry(True, 1.0, 0.05, 10.0, 1.0, None)
    _, backend = build_model(ModelConfig(), geometry, torch.device("cpu"), clip_dim=0)
    assert backend == "torch"


# ---- fast paths (need CUDA) -----------------------------------------------------------------
def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(not (torch.cuda.is_available() and _has("triton")), reason="needs CUDA and triton")
@pytest.mark.parametrize("config", [SMALL, dict(log2_hashmap_size=19), dict(features_per_level=4, num_levels=8)])
def test_triton_matches_torch(config):
    from lerf.fields.hashgrid_triton import hashgrid_triton

    torch.manual_seed(0)
    grid = HashGrid(**config, backend="torch").cuda()
    with torch.no_grad():
        grid.table.normal_()  # O(1) features so that a wrong row or weight shows
    x = torch.cat([_points(4000, torch.float32).cuda(), torch.rand(3, 3, device="cuda").round()])
    upstream = torch.randn(x.shape[0], grid.output_dim, device="cuda")

    results = []
    for fn in (hashgrid_torch, lambda p, t, lay: hashgrid_triton(p, t, grid.level_meta, lay)):
        table, pts = grid.table.detach().clone().requires_grad_(), x.clone().requires_grad_()
        out = fn(pts, table, grid.layout)
        (out * upstream).sum().backward()
        results.append((out, table.grad, pts.grad))
    for ours, ref in zip(results[1], results[0]):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


_INTERPRETER_CHECK = """
import torch
from lerf.fields.hashgrid import hashgrid_torch
from lerf.fields.hashgrid_layout import level_meta_tensor, make_level_layout
from lerf.fields.hashgrid_triton import hashgrid_triton
lay = make_level_layout(4, 2, 10, 4, 32)
gen = torch.Generator().manual_seed(0)
table0 = torch.randn(lay.total_size, 2, generator=gen)
x0 = torch.cat([torch.rand(200, 3, generator=gen), torch.tensor([[0.0, 0, 0], [1, 1, 1], [1.5, -1, 0.5]])])
up = torch.randn(x0.shape[0], 8, generator=gen)
results = []
for fn in (hashgrid_torch, lambda p, t, l: hashgrid_triton(p, t, level_meta_tensor(l), l)):
    t, p = table0.clone().requires_grad_(), x0.clone().requires_grad_()
    out = fn(p, t, lay)
    (out * up).sum().backward()
    results.append((out, t.grad, p.grad))
torch.testing.assert_close(results[1], results[0], rtol=1e-4, atol=1e-4)
"""


@pytest.mark.skipif(not _has("triton"), reason="needs triton (its interpreter runs the kernels on CPU)")
def test_triton_kernels_match_torch_in_interpreter():
    # Triton reads TRITON_INTERPRET when a kernel is defined, hence a fresh process.
    import os
    import subprocess
    import sys

    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-c", _INTERPRETER_CHECK], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def _triton_version() -> tuple[int, int]:
    import triton

    return tuple(int(v) for v in triton.__version__.split(".")[:2])


@pytest.mark.skipif(not _has("triton") or _triton_version() < (3, 9), reason="needs triton >= 3.9 (its compile API)")
def test_triton_kernels_compile_for_gpu_targets():
    # Compiling to a cubin needs no GPU, and catches what the interpreter lets through
    # (constexpr rules, integer widths). The hash constants must stay 64-bit.
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from lerf.fields import hashgrid_triton as ht

    consts = dict(NUM_LEVELS=4, F=2, FP=2, P1=2654435761, P2=805459861, BLOCK=128)
    common = {"x_ptr": "*fp32", "table_ptr": "*fp32", "meta_ptr": "*i64"}
    fwd = {**common, "out_ptr": "*fp32", "n": "i32", **{k: "constexpr" for k in consts}}
    bwd = {**common, "grad_out_ptr": "*fp32", "grad_table_ptr": "*fp32", "grad_x_ptr": "*fp32", "n": "i32",
           **{k: "constexpr" for k in (*consts, "NEED_TABLE", "NEED_X")}}
    target = GPUTarget("cuda", 80, 32)
    kernel = triton.compile(ASTSource(ht._hashgrid_fwd_kernel, fwd, consts), target=target)
    assert "dense<2654435761> : tensor<128xi64>" in kernel.asm["ttir"]
    kernel = triton.compile(ASTSource(ht._hashgrid_bwd_kernel, bwd, dict(consts, NEED_TABLE=True, NEED_X=True)),
                            target=target)
    assert "cubin" in kernel.asm


@pytest.mark.skipif(not (torch.cuda.is_available() and _has("tinycudann")), reason="needs CUDA and tinycudann")
def test_tcnn_backend_runs_and_trains():
    # tcnn aligns its grid differently (see hashgrid_tcnn.py), so only behaviour is compared.
    grid = HashGrid(**SMALL, backend="tcnn").cuda()
    x = torch.rand(1000, 3, device="cuda")
    out = grid(x)
    assert grid.backend == "tcnn" and out.shape == (1000, 8) and out.dtype == torch.float32
    out.square().sum().backward()
    assert all(p.grad is not None for p in grid.parameters())
