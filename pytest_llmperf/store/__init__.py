"""The result store: run documents written atomically and read back whole, saved runs, and
the comparison of a run with a saved baseline."""
