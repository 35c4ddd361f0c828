"""Shared fixtures. Shapes in signatures are checked at test time (jaxtyping + beartype)."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Runtime shape checks for every lerf module imported after this point. No fallback: without
# jaxtyping or beartype (both in the [test] extra) the suite stops here, instead of running on
# with every shape check silently off (tests/test_faults.py::test_shape_checks_are_on checks it works).
import beartype  # noqa: E402,F401 - the checker the hook names; imported here so a missing one fails now
from jaxtyping import install_import_hook  # noqa: E402

_hook = install_import_hook("lerf", "beartype.beartype")

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def lang_run(tmp_path_factory):
    """A tiny demo run with the language field, trained just long enough to localise; shared by
    the query, eval and viewer tests."""
    from lerf.train.trainer import train
    from tests.helpers import LANG_RUN_STEPS, tiny_config

    tmp = tmp_path_factory.mktemp("lang")
    # 6 training views: "seen by >= 5" (the default, for ~40 views) would filter most of its soft
    # geometry, so this run asks for half of its views.
    cfg = tiny_config(tmp, f"trainer.max_steps={LANG_RUN_STEPS}", "trainer.rays_per_batch=512",
                      f"trainer.checkpoint_every={LANG_RUN_STEPS}",
                      "trainer.eval_at_end=false", "relevancy.visibility_min_views=3")
    train(cfg, tmp / "run")
    return tmp / "run"
