"""Observation beside the load: GPU (NVML) and process (psutil) telemetry, the engine's own
Prometheus metrics and the host's facts."""
