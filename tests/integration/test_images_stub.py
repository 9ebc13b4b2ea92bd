"""``--llmperf-images`` against the measuring stub, which counts one token per 28 x 28 pixels
of each PNG a chat request carries and delays its first token by --image-token-ms for each:
every request carries one generated image of the sizes in turn, the server's prompt tokens
per size are the text's plus the image's, and TTFT per size grows by the injected delay."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_llmperf.results.image_sizes import image_size_figures
from pytest_llmperf.store.documents import load_run
from tests.fakes.stub_process import running_stub

pytestmark = pytest.mark.integration

TEST = '''
from pytest_llmperf import LoadFunction, SLOChecker


def test_images(llmperf_load: LoadFunction, llmperf_slo: SLOChecker) -> None:
    llmperf_slo.check(llmperf_load(users=2, requests=12, max_tokens=4))
'''


def test_ttft_and_prompt_tokens_per_image_size(tmp_path: Path) -> None:
    (tmp_path / "test_images.py").write_text(TEST)
    (tmp_path / "thresholds.toml").write_text('[defaults]\nslo = ["error_rate <= 0"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    # 224x224 is 8 x 8 = 64 image tokens, 448x448 16 x 16 = 256: at 0.5 ms a token the first
    # token is due 20 + 32 = 52 ms and 20 + 128 = 148 ms after the request.
    with running_stub("--first-ms", "20", "--token-ms", "2", "--jitter", "0",
                      "--image-token-ms", "0.5") as url:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "test_images.py", "-p", "no:cacheprovider",
             "--backend", "openai", "--model", "stub", "--base-url", url,
             "--llmperf-images", "224x224,448x448", "--llmperf-warmup=1",
             "--llmperf-json=result.json", "--llmperf-report=report.md",
             "--junitxml=junit.xml"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "GITHUB_STEP_SUMMARY": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    (recorded,) = load_run(tmp_path / "result.json").windows
    window = recorded.window
    small, large = image_size_figures(window.run)
    assert (small.size, small.requests, large.size, large.requests) == (
        "224x224", 6, "448x448", 6)
    assert (small.input_tokens_median, large.input_tokens_median) == (12 + 64, 12 + 256)
    assert small.ttft_ms_median is not None and large.ttft_ms_median is not None
    print(f"\nTTFT median {small.ttft_ms_median:.1f} ms at 224x224 (52 injected), "
          f"{large.ttft_ms_median:.1f} ms at 448x448 (148 injected)")
    assert 52 <= small.ttft_ms_median < 52 + 100
    assert 148 <= large.ttft_ms_median < 148 + 100
    assert 60 < large.ttft_ms_median - small.ttft_ms_median < 140  # 96 ms injected
    assert window.prompts is not None and window.prompts.details["images"] == "224x224,448x448"
    report = (tmp_path / "report.md").read_text()
    assert "Per image size (each request carried one image):" in report
    props = {p.get("name"): p.get("value")
             for p in ET.parse(tmp_path / "junit.xml").iter("property")}
    assert float(props["llmperf.images[448x448].input_tokens.median"] or 0) == 268
