"""Templates, static files and server-side SVG charts of the steward web UI."""
