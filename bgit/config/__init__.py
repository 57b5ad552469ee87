"""input.yml: one declaration per setting (schema), loading with ``FILE:LINE: KEY: message``
errors, canonical hashes, the files a config may name, examples."""

from bgit.config.declare import from_dict
from bgit.config.errors import ConfigError, ConfigIssue, ConfigPathError, ConfigValueError
from bgit.config.examples import example_files, example_names, example_text, write_example
from bgit.config.hashing import canonical_json, config_to_dict, section_hash
from bgit.config.load import load_config, parse_config, resolve_path
from bgit.config.paths import find_repository_root, resolve_config_file
from bgit.config.schema import BakeConfig, InputConfig

__all__ = [
    "BakeConfig",
    "ConfigError",
    "ConfigIssue",
    "ConfigPathError",
    "ConfigValueError",
    "InputConfig",
    "canonical_json",
    "config_to_dict",
    "example_files",
    "example_names",
    "example_text",
    "find_repository_root",
    "from_dict",
    "load_config",
    "parse_config",
    "resolve_config_file",
    "resolve_path",
    "section_hash",
    "write_example",
]
