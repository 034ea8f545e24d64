"""The wire models: what clients send and receive, shared by the API, the client and the CLI.

Pydantic only, no web framework: `embtune.client` and the CLI import these without pulling in
FastAPI or the server. Response models read domain objects directly (`from_attributes`), so a
field added to a domain value and its public model appears on the wire with no copy code.
"""
