"""Images in chat (prompts.images): the generated PNGs, the prompts that carry them, the chat
request's content parts, and the records' image size through the result store.  Over HTTP
against the measuring stub: tests/integration/test_images_stub.py."""

from __future__ import annotations

import base64
import io
import json
import random

import pytest
from PIL import Image

from pytest_llmperf.clients.base import Prompt
from pytest_llmperf.clients.openai import Endpoint, build_payload
from pytest_llmperf.prompts.builtin import BuiltinPrompts
from pytest_llmperf.prompts.images import ImagePrompts, png_bytes
from pytest_llmperf.prompts.tool_calls import openai_only
from pytest_llmperf.results.jsonfields import Fields
from pytest_llmperf.results.record_codec import run_from_json, run_to_json
from pytest_llmperf.results.records import LoadRun, RequestRecord
from pytest_llmperf.settings.parsers import image_sizes


@pytest.mark.parametrize("size", [(1, 1), (17, 5), (640, 480), (1024, 1024)])
def test_a_generated_png_decodes_to_its_size(size: tuple[int, int]) -> None:
    image = Image.open(io.BytesIO(png_bytes(*size, random.Random(1))))
    image.load()
    assert image.size == size and image.mode == "RGB"


def test_each_prompt_carries_one_image_of_the_sizes_in_turn_each_one_new() -> None:
    prompts = ImagePrompts(BuiltinPrompts(seed=3), [(64, 32), (32, 64)], seed=3)
    prompts.prepare(3)
    sent = [prompts.next_prompt() for _ in range(5)]  # two more than prepared: made then
    assert [p.image_size for p in sent] == ["64x32", "32x64", "64x32", "32x64", "64x32"]
    urls = [p.images[0] for p in sent]
    assert all(url.startswith("data:image/png;base64,") for url in urls)
    assert len(set(urls)) == 5  # no image cache can flatter a request
    decoded = Image.open(io.BytesIO(base64.b64decode(urls[1].split(",", 1)[1])))
    assert decoded.size == (32, 64)
    assert prompts.describe().details["images"] == "64x32,32x64"
    # Another run (another salt) sends other images.
    again = ImagePrompts(BuiltinPrompts(seed=3), [(64, 32)], seed=3)
    assert again.next_prompt().images[0] != urls[0]


def test_the_chat_request_sends_the_text_then_the_image_parts() -> None:
    prompt = Prompt("what is in it?", history=(("user", "hi"), ("assistant", "hello")),
                    images=("data:image/png;base64,AAAA",), image_size="1x1")
    payload = build_payload(Endpoint("http://h/v1", "m"), prompt, 8)
    assert payload["messages"] == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [
            {"type": "text", "text": "what is in it?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    json.dumps(payload)  # as sent


def test_image_sizes_are_read_and_refused_with_why() -> None:
    assert image_sizes("512x512, 1024X768") == ((512, 512), (1024, 768))
    with pytest.raises(ValueError, match="'512': expected WIDTHxHEIGHT"):
        image_sizes("512")
    with pytest.raises(ValueError, match="'0x10': each side must be 1 to 8192 pixels"):
        image_sizes("0x10")


def test_an_engine_s_own_client_is_told_it_cannot_send_images() -> None:
    prompts = ImagePrompts(BuiltinPrompts(), [(8, 8)])
    assert openai_only(prompts) == "images are sent as the OpenAI API's image_url parts"


def test_the_image_size_survives_the_result_store() -> None:
    record = RequestRecord(0, 1000, (2000, 3000), 4000, 2, image_size="448x448")
    run = LoadRun((record, RequestRecord(1, 1000, (2000,), 3000, 1)), 0, 5000, 1, 0)
    again = run_from_json(Fields(json.loads(json.dumps(run_to_json(run)))))
    assert [r.image_size for r in again.records] == ["448x448", None]


def test_a_window_s_prompts_are_shaped_by_its_endpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pytest_llmperf.prompts.embedding_batches import EmbeddingBatches
    from pytest_llmperf.prompts.for_endpoint import prompts_for
    from pytest_llmperf.settings.resolve import resolve_settings

    load = resolve_settings({"images": "8x8", "embedding_batch": "4",
                             "rerank_documents": "3"}, {}, {}, tmp_path).load
    source = BuiltinPrompts()
    chat = prompts_for(source, "chat", load)
    assert isinstance(chat, ImagePrompts) and prompts_for(chat, "chat", load) is chat
    assert isinstance(prompts_for(source, None, load), ImagePrompts)  # an engine's own client
    embeddings = prompts_for(source, "embeddings", load)
    assert isinstance(embeddings, EmbeddingBatches) and embeddings.batch == 4
    rerank = prompts_for(source, "rerank", load)
    assert isinstance(rerank, EmbeddingBatches) and len(rerank.next_prompt().batch) == 3
    assert prompts_for(source, "completions", load) is source
