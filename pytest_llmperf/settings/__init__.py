"""Settings: the option table (every flag, environment variable and ini key), the value
parsers, and the resolution command line > environment > ini > default into one immutable
record."""

from __future__ import annotations

from pytest_llmperf.settings.groups import (
    CheckSettings,
    LoadSettings,
    ReportSettings,
    SearchSettings,
    ServerSettings,
    SettingError,
    Settings,
    StoreSettings,
    TimeLimits,
)
from pytest_llmperf.settings.resolve import resolve_settings, settings_from

__all__ = ["CheckSettings", "LoadSettings", "ReportSettings", "SearchSettings", "ServerSettings",
           "SettingError", "Settings", "StoreSettings", "TimeLimits", "resolve_settings",
           "settings_from"]
