"""Tidings: self-hosted webhook delivery, signed and retried, on SQLite or PostgreSQL."""

__version__ = "0.1.0"

__all__ = ["__version__"]
