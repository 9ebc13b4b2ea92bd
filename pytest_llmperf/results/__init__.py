"""Results: request records, metric definitions, thresholds and gates, SLO verdicts, statistics
and the result types of windows, sweeps and searches.
The ground floor: nothing here imports another folder of the package."""
