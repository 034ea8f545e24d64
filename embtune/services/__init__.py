"""Use cases, each owning its transaction: tasks, models, runs, recovery."""
