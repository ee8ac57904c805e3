"""The web layer: a JSON API and a search page over :class:`fashion_search.SearchEngine`.

``create_app(engine_or_db, settings)`` builds the ASGI app; ``fashion-search serve`` runs it
with uvicorn. Needs the ``fastapi``/``uvicorn`` dependencies, never torch.
"""

from fashion_search.web.app import Settings, create_app

__all__ = ["Settings", "create_app"]
