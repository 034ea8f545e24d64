"""The task queue: the broker built from settings, the actor, abort signalling."""
