"""Old checkpoints are read through versioned config migrations (lerf/model/checkpoint.py)."""
import pytest
import torch

from lerf.model.checkpoint import VERSION, CheckpointError, checkpoint_file, checkpoint_files, load_checkpoint


def _as_version_3(lang_run, tmp_path, changes):
    """The fixture run's newest checkpoint rewritten as a version-3 file whose config holds the
    keys of that version (`changes`: (group, key) -> value; None removes the key)."""
    state = torch.load(checkpoint_files(lang_run)[0], map_location="cpu", weights_only=False)
    state["version"] = 3
    config = state["config"]
    config["encoder"]["pyramid_spacing"] = "linear"
    config["relevancy"]["scale_spacing"] = "linear"
    for (group, key), value in changes.items():
        if value is None:
            config[group].pop(key)
        else:
            config[group][key] = value
    path = checkpoint_file(tmp_path / "run", state["step"])
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return tmp_path / "run", path


def test_version_3_run_loads_with_its_kept_settings(lang_run, tmp_path):
    run, _ = _as_version_3(lang_run, tmp_path, {("trainer", "rarity_unbiased_nerf"): None})
    ckpt = load_checkpoint(run)
    assert VERSION == 4
    assert not hasattr(ckpt.config.encoder, "pyramid_spacing") and not hasattr(ckpt.config.relevancy, "scale_spacing")
    # Trained before the switch existed: every ray counted once, whatever today's default.
    assert ckpt.config.trainer.rarity_unbiased_nerf is False
    assert load_checkpoint(lang_run).config.trainer.rarity_unbiased_nerf is True  # written explicitly since


@pytest.mark.parametrize("group,key", [("encoder", "pyramid_spacing"), ("relevancy", "scale_spacing")])
def test_version_3_run_with_a_removed_value_is_a_clear_error(lang_run, tmp_path, group, key):
    run, path = _as_version_3(lang_run, tmp_path, {(group, key): "geometric"})
    with pytest.raises(CheckpointError, match=f"{path}.*{group}.{key}=geometric.*no longer"):
        load_checkpoint(run)
