"""Plumbing that knows no feature: consumers' dispatch, raw ASGI answers,
database and Redis access, batching, the channel layer, authentication
middleware and log hygiene. Nothing here imports a feature package."""
