"""The REST API and steward web UI (SPEC §6): one ASGI app served by ``hub serve``."""
