"""Clickstream value objects and pure transforms from search sessions to training data."""
