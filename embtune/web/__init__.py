"""The dashboard: a small hand-written single-page app over the JSON API, served at `/`."""
