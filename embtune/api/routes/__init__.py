"""One router per resource, assembled in `embtune.api.app`.

Handlers are `async def` and hand the blocking service call (database, broker, model) to the
thread pool once with `run_in_threadpool`: a plain `def` handler costs a pool hop for itself and
another to validate its response, and the event loop stays free for `/healthz` either way.
"""
