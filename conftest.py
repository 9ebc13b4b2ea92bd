"""Repository-level wiring for the plugin's own tests (not needed by users)."""

# numpy (the statistics) cannot be imported twice in one process, and pytester's in-process
# runs drop the modules they imported when they end: load it once here, before any of them.
import numpy  # noqa: F401

pytest_plugins = ["pytester"]
