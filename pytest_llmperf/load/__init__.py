"""Load: prompt sources, load shapes and the runner that measures one window."""
