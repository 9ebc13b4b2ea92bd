"""Prompt sources: the built-in prompts, exact-length random prompts, ShareGPT and JSONL
files, shared-prefix documents, and the --llmperf-dataset spec that chooses among them."""
