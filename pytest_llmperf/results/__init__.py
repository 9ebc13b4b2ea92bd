"""Results: immutable request records, metric definitions, thresholds and SLO verdicts.
The ground floor: nothing here imports another folder of the package."""
