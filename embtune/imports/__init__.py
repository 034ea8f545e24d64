"""Streaming readers of import files (NDJSON, Parquet) on any fsspec filesystem.

They read a file chunk by chunk from a resume point and hand back plain rows with their file
position; storing them is the services' business (readers import no services or storage).
"""
