"""Results: request records, metric definitions, thresholds and gates, SLO verdicts, statistics,
the result store and the comparison with a baseline.
The ground floor: nothing here imports another folder of the package."""
