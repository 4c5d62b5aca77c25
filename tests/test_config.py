"""Config: defaults, YAML round trip, and errors that name the dotted key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from tfcli.config import Config, ModelConfig, load_config, save_config
from tfcli.errors import ConfigError


def write(tmp_path, text: str, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path, text: str, overrides=()) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), list(overrides))
    return str(e.value)


def test_defaults_load():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.model.d_model % cfg.model.heads == 0


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()


def test_yaml_round_trip(tmp_path):
    cfg = load_config(
        None,
        [
            "model.d_model=64",
            "model.heads=4",
            "model.norm=pre",
            "train.lr=0.002",
            "train.adam_betas=[0.9,0.997]",
            "data.dev=data/dev",
            "tokenizer.type=bpe",
        ],
    )
    path = tmp_path / "saved.yaml"
    save_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert again.train.adam_betas == (0.9, 0.997)
    assert isinstance(again.train.adam_betas, tuple)


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.d_model = 8  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model = ModelConfig()  # type: ignore[misc]


def test_unknown_key_names_it_and_suggests(tmp_path):
    msg = error_of(tmp_path, "model:\n  d_modle: 256\n")
    assert "model.d_modle" in msg
    assert "did you mean model.d_model" in msg
    assert "config.yaml" in msg


def test_unknown_section_suggests(tmp_path):
    msg = error_of(tmp_path, "modle:\n  d_model: 256\n")
    assert "modle" in msg
    assert "did you mean model" in msg


def test_wrong_type_names_key_and_value(tmp_path):
    msg = error_of(tmp_path, "train:\n  lr: abc\n")
    assert "train.lr" in msg
    assert "abc" in msg


def test_int_key_refuses_float_and_bool(tmp_path):
    assert "model.d_model" in error_of(tmp_path, "model:\n  d_model: 32.5\n")
    assert "model.heads" in error_of(tmp_path, "model:\n  heads: true\n")


def test_out_of_range(tmp_path):
    msg = error_of(tmp_path, "train:\n  batch_tokens: 1\n")
    assert "train.batch_tokens" in msg
    assert "1" in msg
    assert "16" in msg  # the documented minimum


def test_bad_choice_suggests(tmp_path):
    msg = error_of(tmp_path, "model:\n  norm: prex\n")
    assert "model.norm" in msg
    assert "prex" in msg
    assert "did you mean 'pre'" in msg


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    msg = error_of(tmp_path, "model:\n  d_model: 32\n  heads: [2\n")
    assert "config.yaml" in msg
    assert re.search(r"config\.yaml:\d+:\d+", msg), msg


def test_missing_config_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path):
    assert "config.yaml" in error_of(tmp_path, "- a\n- b\n")


def test_float_written_without_dot_is_a_float(tmp_path):
    # YAML 1.1 reads 1e-3 as the string "1e-3".
    cfg = load_config(write(tmp_path, "train:\n  lr: 1e-3\n"))
    assert cfg.train.lr == pytest.approx(1e-3)
    assert isinstance(cfg.train.lr, float)
    assert load_config(None, ["train.lr=1e-3"]).train.lr == pytest.approx(1e-3)


def test_int_accepted_for_float():
    cfg = load_config(None, ["train.lr=1"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


def test_overrides_apply_over_the_file(tmp_path):
    path = write(tmp_path, "train:\n  lr: 0.5\nmodel:\n  d_model: 64\n")
    cfg = load_config(path, ["train.lr=0.001", "data.dev=null", "decode.beam=5"])
    assert cfg.train.lr == pytest.approx(0.001)
    assert cfg.model.d_model == 64
    assert cfg.data.dev is None
    assert cfg.decode.beam == 5


def test_override_unknown_key_suggests():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.lrr=0.1"])
    assert "train.lrr" in str(e.value)
    assert "did you mean train.lr" in str(e.value)


def test_override_unknown_section():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["trian.lr=0.1"])
    assert "trian" in str(e.value)
    assert "did you mean train" in str(e.value)


@pytest.mark.parametrize("override", ["train.lr", "lr=0.1", "train.lr.x=1", ".lr=1", "train.=1"])
def test_malformed_override(override):
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, [override])


def test_override_validated_like_the_file():
    with pytest.raises(ConfigError, match=r"train\.lr.*abc"):
        load_config(None, ["train.lr=abc"])
    with pytest.raises(ConfigError, match="train.batch_tokens"):
        load_config(None, ["train.batch_tokens=1"])
    with pytest.raises(ConfigError, match="did you mean 'pre'"):
        load_config(None, ["model.norm=prex"])


def test_heads_must_divide_d_model():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.d_model=30", "model.heads=4"])
    assert "model.heads" in str(e.value)
    assert "model.d_model" in str(e.value)


def test_tie_all_needs_shared_vocabulary(tmp_path):
    msg = error_of(tmp_path, "tokenizer:\n  shared: false\nmodel:\n  tie_embeddings: all\n")
    assert "model.tie_embeddings" in msg
    assert "tokenizer.shared" in msg
    cfg = load_config(None, ["tokenizer.shared=false", "model.tie_embeddings=decoder"])
    assert cfg.tokenizer.shared is False


def test_n_best_at_most_beam():
    with pytest.raises(ConfigError, match="decode.n_best"):
        load_config(None, ["decode.beam=2", "decode.n_best=3"])


def test_bad_device():
    with pytest.raises(ConfigError, match="train.device"):
        load_config(None, ["train.device=gpu"])
    assert load_config(None, ["train.device=cuda:1"]).train.device == "cuda:1"


@pytest.mark.parametrize("override", ["train.lr=nan", "model.dropout=.nan"])
def test_nan_is_refused(override):
    # NaN passes every range comparison, so it must be refused explicitly.
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_config(None, [override])


def _keys() -> list[str]:
    """Every dotted key of the schema."""
    sections = {f.name: getattr(Config(), f.name) for f in dataclasses.fields(Config)}
    return [f"{name}.{f.name}" for name, obj in sections.items() for f in dataclasses.fields(obj)]


ROOT = Path(__file__).resolve().parents[1]


def test_every_key_is_in_the_readme_table_and_in_the_shipped_configs():
    keys = _keys()
    assert "model.d_model" in keys and "decode.precision" in keys
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for key in keys:
        assert f"| `{key}` |" in readme, key
    for name in ("quickstart", "base", "big"):
        raw = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text(encoding="utf-8"))
        given = [f"{section}.{key}" for section, values in raw.items() for key in values]
        assert sorted(given) == sorted(keys), name
