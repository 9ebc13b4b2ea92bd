"""--gpus under pytest-xdist: one set per worker, never one set for several workers at once.

With ``-n N`` every worker launches its own engines at the same time; one GPU set for all of
them would put N engines on the same GPUs (out of memory, or numbers measured on a shared GPU).
That is refused, naming the setting and what to give instead; N sets give worker k the k-th.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.settings.groups import ServerSettings, SettingError
from pytest_llmperf.settings.resolve import resolve_settings


def server(tmp_path: Path, gpus: str) -> ServerSettings:
    return resolve_settings({"gpus": gpus}, {}, {}, tmp_path).server


def xdist(worker: int, count: int) -> dict[str, str]:
    return {"PYTEST_XDIST_WORKER": f"gw{worker}", "PYTEST_XDIST_WORKER_COUNT": str(count)}


def test_one_set_for_several_workers_is_refused(tmp_path: Path) -> None:
    settings = server(tmp_path, "0,1")
    for worker in (0, 1):
        with pytest.raises(SettingError) as refused:
            settings.gpu_ids(xdist(worker, 2))
        message = str(refused.value)
        assert message.startswith(settings.sources["gpus"] + ": ")
        assert "one GPU set (0,1) for 2 pytest-xdist workers" in message
        assert "one set per worker" in message and "|" in message


def test_one_set_for_one_process(tmp_path: Path) -> None:
    settings = server(tmp_path, "0,1")
    assert settings.gpu_ids({}) == (0, 1)  # no pytest-xdist
    assert settings.gpu_ids(xdist(0, 1)) == (0, 1)  # -n 1


def test_one_set_per_worker(tmp_path: Path) -> None:
    settings = server(tmp_path, "0,1|2,3")
    assert settings.gpu_ids(xdist(0, 2)) == (0, 1)
    assert settings.gpu_ids(xdist(1, 2)) == (2, 3)
    with pytest.raises(SettingError, match="2 GPU sets for pytest-xdist worker gw2"):
        settings.gpu_ids(xdist(2, 3))


def test_no_gpus_given(tmp_path: Path) -> None:
    assert resolve_settings({}, {}, {}, tmp_path).server.gpu_ids(xdist(1, 2)) is None
