"""The package version, in one place (the package, its reports and figures read it)."""

__version__ = "0.1.0"
