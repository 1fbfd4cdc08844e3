"""Test session fixtures live in hub.testing (servers started once per session)."""

pytest_plugins = ["hub.testing"]
