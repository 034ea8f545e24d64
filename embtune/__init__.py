"""embtune: keep a search engine's embedding model improving from its own clickstream."""

__version__ = "0.1.0"
