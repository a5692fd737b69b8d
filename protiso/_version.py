"""The package version, kept apart so any floor can import it without importing the package API."""
__version__ = "0.1.0"
