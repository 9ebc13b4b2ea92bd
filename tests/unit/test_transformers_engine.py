"""The transformers backend's batching worker and streamer, on a tiny model built here.

The model is a real ``LlamaForCausalLM`` (2 layers, 32 dimensions) whose weights are set so
that greedy decoding walks a fixed chain: token ``wK`` is followed by ``wK+1``, and ``w10`` by
EOS.  Attention and MLP outputs are zeroed, so the next token depends only on the last one:
each row's answer is known in advance whatever else shares its batch.  No network, no files.

The backend's own checks (install hint, no torch at import) need neither torch nor transformers;
nor does the client side of the hand-over (records, timeouts), tested in test_inprocess_client.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.clients.inprocess import InProcessClient
from pytest_llmperf.engines.catalog import ModelEntry, ModelSource
from pytest_llmperf.results.records import RequestRecord, TokenSource
from pytest_llmperf.settings.groups import ServerSettings
from pytest_llmperf.settings.resolve import resolve_settings

WORDS = ["<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(29)]
EOS = 1
EOS_AFTER = "w10"  # the chain's last word: EOS follows it


def _tiny_model() -> tuple[Any, Any]:
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # No pad token and no chat template: the engine must cope with both missing.
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>",
                                        unk_token="<unk>")
    size = len(WORDS)
    config = LlamaConfig(vocab_size=size, hidden_size=size, intermediate_size=16,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=512, eos_token_id=EOS, bos_token_id=None,
                         pad_token_id=None, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        # Residual stream = one-hot of the current token; the lm_head maps it to the next.
        model.model.embed_tokens.weight.copy_(torch.eye(size))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        chain = torch.zeros(size, size)
        for token in range(size):
            chain[(token + 1) % size, token] = 1.0
        last = vocab[EOS_AFTER]
        chain[:, last] = 0.0
        chain[EOS, last] = 1.0
        model.lm_head.weight.copy_(chain)
    return model, tokenizer


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    return _tiny_model()


@pytest.fixture
def make_engine(tiny: tuple[Any, Any]) -> Iterator[Callable[..., Any]]:
    from pytest_llmperf.engines.transformers_engine import TransformersEngine

    engines: list[TransformersEngine] = []

    def make(*, max_num_seqs: int = 8, ignore_eos: bool = True, gather_s: float = 0.002,
             chat_template: str | None = None) -> TransformersEngine:
        model, tokenizer = tiny
        tokenizer.chat_template = chat_template
        tokenizer.pad_token = None
        engine = TransformersEngine(model, tokenizer, max_num_seqs=max_num_seqs,
                                    ignore_eos=ignore_eos, gather_s=gather_s)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def _run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 120)  # a hang fails the test, never the suite

    return asyncio.run(bounded())


async def _queued_then_started(engine: Any, prompts: Sequence[str], max_tokens: int,
                               ) -> list[RequestRecord]:
    """Queue every request before the worker starts, so all are waiting for its first batch."""
    client = engine.client(max_tokens, 60.0)
    tasks = [asyncio.create_task(client.send(i, p)) for i, p in enumerate(prompts)]
    while engine.waiting < len(prompts):
        await asyncio.sleep(0)
    engine.start()
    return list(await asyncio.gather(*tasks))


def test_concurrent_requests_are_generated_in_one_batch(make_engine: Any) -> None:
    engine = make_engine()
    records = _run(_queued_then_started(engine, ["w3", "w12 w4", "w20", "w1 w2 w5"], 6))
    assert engine.batch_sizes == [4]
    assert all(r.ok for r in records), [r.error for r in records]
    # One decoding step per token for the whole batch: every row has the same timestamps.
    assert len({r.chunk_ns for r in records}) == 1


def test_batch_is_capped_at_max_num_seqs(make_engine: Any) -> None:
    engine = make_engine(max_num_seqs=2)
    records = _run(_queued_then_started(engine, ["w3"] * 5, 4))
    assert engine.batch_sizes == [2, 2, 1]
    assert [r.output_tokens for r in records] == [4] * 5


def test_requests_sent_together_share_a_batch_with_a_running_worker(make_engine: Any) -> None:
    # The worker waits for the batch to fill (3 of 3) rather than for the window to pass.
    engine = make_engine(max_num_seqs=3, gather_s=30.0)
    engine.start()

    async def three() -> list[RequestRecord]:
        client = engine.client(4, 60.0)
        return list(await asyncio.gather(*(client.send(i, "w3") for i in range(3))))

    records = _run(three())
    assert engine.batch_sizes == [3]
    assert all(r.ok for r in records)


def test_one_increasing_timestamp_per_token_and_exactly_max_tokens(make_engine: Any) -> None:
    engine = make_engine(ignore_eos=True)
    # "w7" would reach EOS after three tokens; ignore_eos must still give exactly 8.
    records = _run(_queued_then_started(engine, ["w7", "w3"], 8))
    for record in records:
        assert record.output_tokens == len(record.chunk_ns) == 8
        assert record.output_token_source is TokenSource.ENGINE
        assert record.finish_reason == "length"
        assert record.send_ns < record.chunk_ns[0]
        assert all(a < b for a, b in zip(record.chunk_ns, record.chunk_ns[1:], strict=False))
        assert record.end_ns == record.chunk_ns[-1]
        assert record.input_tokens == 1 and record.input_token_source is TokenSource.ENGINE


def test_a_row_that_reaches_eos_gets_no_more_tokens(make_engine: Any) -> None:
    engine = make_engine(ignore_eos=False)
    short, long = _run(_queued_then_started(engine, ["w7", "w3"], 6))
    assert engine.batch_sizes == [2]
    # w7 -> w8 w9 w10 EOS: three tokens, then the pad tokens of later steps are not its own.
    assert (short.output_tokens, len(short.chunk_ns), short.finish_reason) == (3, 3, "stop")
    assert (long.output_tokens, len(long.chunk_ns), long.finish_reason) == (6, 6, "length")
    assert short.chunk_ns == long.chunk_ns[:3]
    assert short.end_ns == long.chunk_ns[3]  # it ended at the step that produced its EOS
    assert short.ok and long.ok


def test_chat_template_is_applied_and_counted_as_input(make_engine: Any) -> None:
    engine = make_engine(chat_template="{% for m in messages %}w20 {{ m['content'] }}"
                                       "{% endfor %}{% if add_generation_prompt %} w0{% endif %}")
    (record,) = _run(_queued_then_started(engine, ["w3 w4"], 2))
    assert record.ok
    assert record.input_tokens == 4  # w20 w3 w4 w0


def test_generate_error_fails_its_batch_and_the_next_batch_works(
    make_engine: Any, tiny: tuple[Any, Any]
) -> None:
    import torch

    engine = make_engine()
    calls = 0

    def fail_third_forward(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise torch.OutOfMemoryError("CUDA error: tried to allocate 2.00 GiB")

    hook = tiny[0].register_forward_hook(fail_third_forward)
    try:
        failed = _run(_queued_then_started(engine, ["w3", "w4"], 6))
    finally:
        hook.remove()
    for record in failed:
        assert not record.ok
        assert "out of memory" in (record.error or "")
        assert len(record.chunk_ns) == 2  # the two steps before the failure streamed

    (record,) = _run(_one(engine, "w3", 6))
    assert record.ok and record.output_tokens == 6
    assert engine.batch_sizes == [2, 1]


async def _one(engine: Any, prompt: str, max_tokens: int) -> list[RequestRecord]:
    async with engine.client(max_tokens, 60.0) as client:
        assert isinstance(client, InProcessClient) and client.engine is engine
        return [await client.send(0, prompt)]


def test_a_timed_out_request_is_dropped_before_its_batch(make_engine: Any) -> None:
    # The client's side of a timeout (the error record) is tested without torch, in
    # test_inprocess_client.py; here: the engine never generates the abandoned request.
    engine = make_engine()

    async def late() -> RequestRecord:
        async with engine.client(4, 0.05) as client:
            return await client.send(0, "w3")  # the worker has not started: it must time out

    record = _run(late())
    assert not record.ok
    assert engine.waiting == 1  # still queued, but abandoned
    engine.start()
    (record,) = _run(_one(engine, "w3", 4))
    assert record.ok
    assert engine.batch_sizes == [1]  # the abandoned request was never generated


def test_closing_ends_the_running_batch_at_its_next_step(
    make_engine: Any, tiny: tuple[Any, Any]
) -> None:
    engine = make_engine()
    calls = 0

    def close_at_third_forward(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            engine.stopping = True  # what close() does first, from inside the running batch

    hook = tiny[0].register_forward_hook(close_at_third_forward)
    try:
        records = _run(_queued_then_started(engine, ["w3", "w4"], 100))
    finally:
        hook.remove()
    for record in records:
        assert not record.ok and "stopped" in (record.error or "")
        assert 0 < len(record.chunk_ns) < 100
    assert calls < 10


def test_close_fails_waiting_requests_and_drops_the_model(make_engine: Any) -> None:
    engine = make_engine()

    async def queued_then_closed() -> list[RequestRecord]:
        client = engine.client(4, 60.0)
        tasks = [asyncio.create_task(client.send(i, "w3")) for i in range(2)]
        while engine.waiting < 2:
            await asyncio.sleep(0)
        engine.close()
        return list(await asyncio.gather(*tasks))

    records = _run(queued_then_closed())
    assert all("stopped" in (r.error or "") for r in records)
    assert engine.model is None and engine.tokenizer is None
    (late,) = _run(_one(engine, "w3", 4))
    assert not late.ok and "stopped" in (late.error or "")


# -- the backend: no torch needed ----------------------------------------------------------


def _settings(tmp_path: Path, **cli: str) -> ServerSettings:
    return resolve_settings({"backends": "transformers", **cli}, {}, {}, tmp_path).server


GGUF_ENTRY = ModelEntry("smollm2-135m", {
    "gguf": ModelSource("gguf", "embedded:smollm2-135m"),
    "hf": ModelSource("hf", "HuggingFaceTB/SmolLM2-135M-Instruct"),
})


def test_check_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    from pytest_llmperf.engines.transformers import TransformersBackend

    installed = ("transformers", "accelerate")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name in installed else None)
    with pytest.raises(ValueError) as excinfo:
        TransformersBackend().check(_settings(tmp_path), GGUF_ENTRY)
    message = str(excinfo.value)
    assert "\n" not in message
    assert "torch, gguf not installed" in message
    assert "pip install 'pytest-llmperf[transformers]'" in message


def test_check_needs_no_gguf_for_an_hf_source(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    from pytest_llmperf.engines.transformers import TransformersBackend

    installed = ("torch", "transformers")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name in installed else None)
    hf_only = ModelEntry("x", {"hf": ModelSource("hf", "org/model")})
    TransformersBackend().check(_settings(tmp_path), hf_only)


def test_check_rejects_base_url_and_a_missing_gguf_file(tmp_path: Path) -> None:
    from pytest_llmperf.engines.transformers import TransformersBackend

    backend = TransformersBackend()
    with pytest.raises(ValueError, match="cannot attach"):
        backend.check(_settings(tmp_path, base_url="http://127.0.0.1:9/v1"), GGUF_ENTRY)
    if not all(importlib.util.find_spec(m) for m in ("torch", "transformers", "gguf",
                                                      "accelerate")):
        pytest.skip("the engine is not installed: check stops at the install hint")
    missing = ModelEntry("m", {"gguf": ModelSource("gguf", str(tmp_path / "no.gguf"))})
    with pytest.raises(ValueError, match="does not exist"):
        backend.check(_settings(tmp_path), missing)


def test_unsupported_without_gguf_or_hf_source(tmp_path: Path) -> None:
    from pytest_llmperf.engines.transformers import TransformersBackend

    backend = TransformersBackend()
    ollama_only = ModelEntry("q", {"ollama": ModelSource("ollama", "qwen2.5:32b")})
    assert "no gguf or hf source" in (backend.unsupported(_settings(tmp_path), ollama_only) or "")
    assert backend.unsupported(_settings(tmp_path), GGUF_ENTRY) is None


def test_backend_module_does_not_import_torch() -> None:
    code = ("import sys, pytest_llmperf.engines.transformers; "
            "sys.exit(any(m in sys.modules for m in ('torch', 'transformers')))")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
