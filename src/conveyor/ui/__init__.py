"""The web UI: server-rendered pages over the same rules as the API (docs/ui.md)."""
