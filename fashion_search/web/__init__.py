"""The web layer: a JSON API and a search page over an index's read and write sides.

``create_app(index, settings)`` builds the ASGI app; ``fashion-search serve`` runs it with
uvicorn. Needs the ``fastapi``/``uvicorn`` dependencies, never torch.
"""

from fashion_search.settings import Settings
from fashion_search.web.app import create_app

__all__ = ["Settings", "create_app"]
