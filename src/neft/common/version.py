"""The package version, recorded in every checkpoint and results file (CHANGELOG.md)."""

__version__ = "0.2.0"
