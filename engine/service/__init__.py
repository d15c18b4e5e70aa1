"""The FastAPI app over a loaded bundle."""

from engine.service.app import create_app

__all__ = ["create_app"]
