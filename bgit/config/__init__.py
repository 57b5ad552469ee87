"""input.yml: loading with ``FILE:LINE: KEY: message`` errors, canonical hashes, examples."""

from bgit.config.errors import ConfigError, ConfigIssue
from bgit.config.examples import example_files, example_names, example_text, write_example
from bgit.config.hashing import canonical_json, config_to_dict, section_hash
from bgit.config.load import load_config, parse_config, resolve_path
from bgit.config.schema import InputConfig

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "InputConfig",
    "canonical_json",
    "config_to_dict",
    "example_files",
    "example_names",
    "example_text",
    "load_config",
    "parse_config",
    "resolve_path",
    "section_hash",
    "write_example",
]
