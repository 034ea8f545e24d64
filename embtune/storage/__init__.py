"""Persistence: engine and transactions, tables, repositories, migrations."""
