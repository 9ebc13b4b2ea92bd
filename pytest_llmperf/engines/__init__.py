"""Inference engines behind one protocol: launch or attach, readiness, teardown, the model
catalogue, the GPU-memory fit pre-check and the embedded model fetch."""
