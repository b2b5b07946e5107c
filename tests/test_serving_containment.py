"""Model names, base paths and version folders cannot lead outside the model repository."""
from pathlib import Path

import pytest

from tfmusic.serving.config import parse_models_config, repo_models
from tfmusic.serving.repository import list_versions


def _version(folder: Path, v: int) -> Path:
    d = folder / str(v)
    d.mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(b"")
    return d


def _config(tmp_path: Path, base_path: str) -> Path:
    cfg = tmp_path / "models.config"
    cfg.write_text('model_config_list { config { name: "m" base_path: "%s" model_platform: "tensorflow" } }'
                   % base_path)
    return cfg


def test_config_base_paths_stay_inside_repo(tmp_path):
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    _version(repo / "m", 1)
    _version(outside / "m", 1)
    assert parse_models_config(_config(tmp_path, "/models/m"), repo)[0].base_path == repo / "m"
    for bad in ("/models/..", "..", "/"):
        with pytest.raises(ValueError, match="not a model folder name inside the repository"):
            parse_models_config(_config(tmp_path, bad), repo)
    (repo / "escape").symlink_to(outside / "m")
    with pytest.raises(ValueError, match="outside the repository"):
        parse_models_config(_config(tmp_path, "/models/escape"), repo)
    with pytest.raises(ValueError, match="outside the repository"):
        repo_models(repo)


def test_version_symlinks_out_of_the_model_are_ignored(tmp_path):
    model, outside = tmp_path / "repo" / "m", tmp_path / "outside"
    _version(model, 1)
    target = _version(outside, 7)
    (model / "2").symlink_to(target)
    assert list_versions(model) == [1]
