"""Vector sinks: where a reindex task writes a model's catalogue vectors (Parquet, Qdrant)."""
