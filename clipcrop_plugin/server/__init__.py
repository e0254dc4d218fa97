"""``clipcrop serve``: the HTTP API and the review page (see :func:`create_app`)."""

from .app import create_app

__all__ = ["create_app"]
