"""The library's stores, one per domain, composed by core.library.Library (lib.photos, lib.concepts, ...)."""
from .adapters import AdapterStore
from .captions import CaptionStore
from .concepts import ConceptStore
from .photos import PhotoStore
from .retrieval import RetrievalStore

__all__ = ["AdapterStore", "CaptionStore", "ConceptStore", "PhotoStore", "RetrievalStore"]
