"""Shared fixtures. Shapes in signatures are checked at test time (jaxtyping + beartype)."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

try:  # runtime shape checks for every lerf module imported after this point
    from jaxtyping import install_import_hook

    _hook = install_import_hook("lerf", "beartype.beartype")
except Exception:  # pragma: no cover - beartype missing: tests still run without shape checks
    _hook = None

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
