"""Load: load shapes and arrival schedules, the closed- and open-loop generators, client
processes, and the runner that measures one window."""
