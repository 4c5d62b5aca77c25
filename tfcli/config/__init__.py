"""Typed, frozen configuration: the schema (schema.py), its checks (checks.py) and its files
(files.py). Import the names from here."""

from tfcli.config.files import (
    apply_override,
    config_from_dict,
    config_to_dict,
    load_config,
    read_yaml,
    save_config,
)
from tfcli.config.schema import (
    Config,
    DataConfig,
    DecodeConfig,
    ModelConfig,
    Precision,
    ServeConfig,
    TokenizerConfig,
    TrainConfig,
    TranslatePrecision,
)

__all__ = [
    "Config",
    "DataConfig",
    "DecodeConfig",
    "ModelConfig",
    "Precision",
    "ServeConfig",
    "TokenizerConfig",
    "TrainConfig",
    "TranslatePrecision",
    "apply_override",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "read_yaml",
    "save_config",
]
