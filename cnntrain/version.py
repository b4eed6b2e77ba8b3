"""cnntrain's version, on the ground floor: the package's face re-exports it, and the run's provenance and the
trackers' tags record it, without importing the package's lazy API. It matches pyproject.toml and CHANGELOG.md
(tests/test_version.py)."""

__version__ = "0.2.0"
