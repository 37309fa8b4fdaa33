"""Speech2Face Live call server: aiohttp signalling + aiortc media around the avatar engine."""

from .config import ServerConfig

__all__ = ["ServerConfig"]
