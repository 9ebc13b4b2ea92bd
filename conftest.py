"""Repository-level wiring for the plugin's own tests (not needed by users)."""

pytest_plugins = ["pytester"]
