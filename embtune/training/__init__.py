"""Fine-tuning and evaluation around sentence-transformers; imports no HTTP or SQL code."""
