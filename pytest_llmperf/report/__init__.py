"""Reports: junit properties, markdown (per window, per search, resources), the terminal summary,
comparison tables and charts, all read from typed result records."""
