"""The HTTP API (FastAPI): app factory, auth and roles, one router per resource."""

from tidings.api.app import create_app

__all__ = ["create_app"]
