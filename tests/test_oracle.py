"""The instrument's reference (lerf/demo/oracle.py): the supervision itself localizes objects,
and the oracle reads the same pyramid rule the field is trained on."""
import json

import torch

from lerf.demo.oracle import supervision_embeddings
from lerf.query.relevancy import scale_values
from lerf.query.run import load_run


def test_oracle_localizes_from_the_supervision(lang_run, tmp_path):
    from eval import oracle  # the script, importable from the repo root

    oracle.main([f"run={lang_run}", f"out={tmp_path}"])
    summary = json.loads((tmp_path / "oracle_localization.json").read_text())
    assert summary["num_queries"] > 0 and summary["input"].startswith("the CLIP pyramid")
    # the supervision of the tiny scene answers every level (1.0 when this was written)
    assert min(summary["per_level"].values()) >= 0.9, summary["per_level"]


def test_oracle_pixels_outside_the_pyramid_range_are_undefined(lang_run):
    loaded = load_run(lang_run, "cpu")
    scene, cfg = loaded.scene, loaded.cfg
    cam = scene.eval_idx[0]
    scales = torch.tensor([1e-4, float(scale_values(cfg.relevancy)[5]), 50.0])  # far too small, searched, far too big
    embeds, valid = supervision_embeddings(loaded.text_encoder(), scene, cfg, cam, scales)
    assert not valid[0].any() and not valid[2].any() and valid[1].any()
    assert torch.equal(embeds[0], torch.zeros_like(embeds[0]))
    torch.testing.assert_close(embeds[1][valid[1]].norm(dim=-1), torch.ones(int(valid[1].sum())))
    background = ~torch.isfinite(scene.demo.depth_z_m[cam].reshape(-1))
    assert not (valid[1] & background).any()  # no surface, no crop size: undefined
