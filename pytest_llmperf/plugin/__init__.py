"""The pytest layer: hooks (the pytest11 entry point, hooks.py), activation of a session,
fixtures as thin adapters of the library, the per-test recorder, the reporter plugin, the SLO
check and pytest-xdist grouping.  Nothing below this folder imports pytest."""
