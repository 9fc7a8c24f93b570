"""The server: settings, the hub (fan-out), connections, the ASGI endpoint and app, and
:func:`.serve.serve`, which runs them under Hypercorn."""
