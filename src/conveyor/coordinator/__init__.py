"""The coordinator process: its configuration, the components one replica is made of,
the background loops supervised by name, and the ASGI app that serves the API and the
UI over them. It sits above `api` and `ui`, which know nothing of how they are wired."""
