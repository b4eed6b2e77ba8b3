"""cnntrain: train image CNNs from YAML configs with one command."""

__version__ = "0.2.0"
