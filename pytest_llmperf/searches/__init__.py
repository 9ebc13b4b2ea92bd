"""Searches over many measured windows: sweeps, the capacity search and its probe rules, the
prefix-cache comparison."""
