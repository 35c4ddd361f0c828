"""The memory-bounded query cache: its bounds bracket the exact relevancy, and on a trained run it
picks the same scale and peak pixel as the exact path."""
import pytest
import torch

from lerf.query.bounded import LowRankFactors, project, rank_for_budget, relevancy_bounds
from lerf.query.engine import QueryEngine
from lerf.query.run import load_run


@pytest.mark.parametrize("rank, dtype", [(1, torch.float32), (5, torch.float16), (17, torch.float32)])
def test_bounds_bracket_exact_relevancy(rank, dtype):
    gen = torch.Generator().manual_seed(0)
    n, s, width, temperature = 200, 6, 17, 10.0
    low = torch.randn(n, s, 3, generator=gen) @ torch.randn(3, width, generator=gen)  # nearly rank 3
    u = low + 0.05 * torch.randn(n, s, width, generator=gen)
    dirs = torch.randn(4, width, generator=gen)
    basis = torch.linalg.qr(torch.randn(width, rank, generator=gen))[0]
    parts = project(u, basis, dtype)
    lr = LowRankFactors(basis, parts["coeffs"], parts["err_perp"], parts["err_round"],
                        torch.zeros(n, 1, 3), torch.ones(n, 1), torch.ones(n))  # every pixel has language weight
    share = torch.rand(n, generator=gen)  # a visible share scales each pixel's relevancy and its bounds
    c2, l2, u2 = relevancy_bounds(lr, dirs, temperature, block=64, share=share)
    exact = torch.sigmoid(temperature * (u @ dirs.T)).amin(-1)
    centre, lower, upper = relevancy_bounds(lr, dirs, temperature, block=64)
    assert (lower <= exact).all() and (exact <= upper).all() and (lower <= centre).all() and (centre <= upper).all()
    torch.testing.assert_close(l2, lower * share[:, None])
    assert (l2 <= exact * share[:, None]).all() and (exact * share[:, None] <= u2).all()
    if rank == width:  # a complete basis in fp32 leaves nothing to bound
        torch.testing.assert_close(centre, exact)


def test_budget_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="raise the budget"):
        rank_for_budget(1440 * 1080, 30, 257, 24, 2**20, torch.float16)
    assert rank_for_budget(1440 * 1080, 30, 257, 24, 4 * 2**30, torch.float16) >= 16


@pytest.mark.parametrize("extra_ranks", [1, 12])
def test_bounded_cache_matches_exact_scale_and_peak(lang_run, extra_ranks):  # noqa: F811
    loaded = load_run(lang_run, "cpu")
    cam = loaded.scene.eval_idx[0]
    cameras = loaded.scene.cameras
    full = QueryEngine(loaded.model, loaded.text_encoder(), loaded.cfg.relevancy, chunk=1024)
    pixels, width = cameras.height * cameras.width, loaded.model.clip_hidden_width + 1
    budget = next(b for b in range(0, full.full_cache_bytes(pixels), 4096)
                  if rank_for_budget_or_0(pixels, width, loaded, b) >= extra_ranks)
    assert budget < full.full_cache_bytes(pixels)
    engine = QueryEngine(loaded.model, loaded.text_encoder(), loaded.cfg.relevancy, chunk=1024,
                         cache_budget_bytes=budget)
    render = engine.view(cameras, cam)
    assert render.low_rank is not None and render.cache_bytes <= budget
    assert render.low_rank.basis.shape[1] == extra_ranks
    for prompt in ("red mug", "yellow banana", "white plate"):
        exact = full.query_exact(prompt, cameras, cam)
        bounded = engine.query(prompt, cameras, cam)
        assert (bounded.scale_idx, bounded.peak()) == (exact.scale_idx, exact.peak()), prompt
        torch.testing.assert_close(bounded.relevancy, exact.relevancy, atol=1e-4, rtol=0)
        assert 0 < bounded.recomputed <= pixels * len(engine.scales)
    engine.exact_map = False  # peak and scale from the search alone
    for prompt in ("red mug", "blue teapot"):
        exact = full.query_exact(prompt, cameras, cam)
        bounded = engine.query(prompt, cameras, cam)
        assert (bounded.scale_idx, bounded.peak()) == (exact.scale_idx, exact.peak()), prompt


def rank_for_budget_or_0(pixels: int, width: int, loaded, budget: int) -> int:
    try:
        return rank_for_budget(pixels, loaded.cfg.relevancy.num_scales, width,
                               loaded.model.cfg.language.samples_per_ray, budget, torch.float32)
    except ValueError:
        return 0
