"""Config dataclasses, files and overrides."""
import json

import pytest

from tfmusic.training.config import (
    ConfigError, TrainerConfig, deep_merge, from_dict, load_config_file, parse_assignment, set_dotted,
    to_dict,
)


def test_trainer_config_round_trip(tmp_path):
    cfg = TrainerConfig(steps=7, batch_size=4, devices=2, mixed_precision="mixed_bfloat16")
    cfg.plateau.patience = 3
    data = to_dict(cfg)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    again = from_dict(TrainerConfig, load_config_file(path), str(path))
    assert again == cfg
    assert again.plateau.patience == 3 and again.devices == 2


def test_yaml_file_and_partial_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 12\nplateau:\n  factor: 0.5\ndevices: ['/cpu:0', '/cpu:1']\neval_steps: null\n")
    cfg = from_dict(TrainerConfig, load_config_file(path), str(path))
    assert cfg.steps == 12 and cfg.plateau.factor == 0.5 and cfg.plateau.cooldown == 10
    assert cfg.devices == ["/cpu:0", "/cpu:1"] and cfg.eval_steps is None


@pytest.mark.parametrize("data, message", [
    ({"stepz": 3}, "unknown key"),
    ({"steps": "many"}, "steps: expected an integer"),
    ({"plateau": {"factor": 2.0}}, "plateau.factor"),
    ({"strategy": "tpu"}, "strategy"),
    ({"mixed_precision": "fp8"}, "mixed_precision"),
    ({"plateau": {"patience": True}}, "plateau.patience"),
])
def test_bad_values_name_the_source_and_key(data, message):
    with pytest.raises(ConfigError) as err:
        from_dict(TrainerConfig, data, "my.yaml")
    assert "my.yaml" in str(err.value) and message in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: cannot parse"):
        load_config_file(bad)
    lst = tmp_path / "list.json"
    lst.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="mapping"):
        load_config_file(lst)
    txt = tmp_path / "c.toml"
    txt.write_text("")
    with pytest.raises(ConfigError, match="format"):
        load_config_file(txt)


def test_overrides():
    base = {"trainer": {"steps": 5, "plateau": {"factor": 0.3}}, "model": "iass"}
    merged = deep_merge(base, {"trainer": {"plateau": {"patience": 2}}})
    assert merged["trainer"]["plateau"] == {"factor": 0.3, "patience": 2}
    assert base["trainer"]["plateau"] == {"factor": 0.3}
    key, value = parse_assignment("trainer.plateau.min_lr=1e-6")
    set_dotted(merged, key, value)
    assert merged["trainer"]["plateau"]["min_lr"] in (1e-6, "1e-6")
    cfg = from_dict(TrainerConfig, merged["trainer"])
    assert cfg.plateau.min_lr == 1e-6  # YAML 1.1 reads 1e-6 as text; floats accept it
    assert parse_assignment("trainer.eval_steps=null") == ("trainer.eval_steps", None)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignment("nonsense")
