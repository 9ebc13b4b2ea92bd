"""Aliases (settings.options ``Option.aliases``): older spellings of our flags, and
``--base-url``, which pytest-base-url registers too.  Registered without ever clashing.

pytest builds one argparse parser from every plugin's options, and a flag that two plugins
register stops every pytest session (``argparse.ArgumentError: argument --base-url:
conflicting option string``).  Plugins load in no fixed order: ``-p`` plugins first, then the
entry points in the order the installed distributions are found, then the initial conftests'
``pytest_plugins``.  So an alias is registered at the last moment options can still be added
(once every plugin is in: after the initial conftests, just before pytest parses the command
line), and only when no other plugin has registered that flag by then.  When another plugin
has, its value is read (``SHARED``: pytest-base-url's ``--base-url``), or, for an old spelling
of ours, the ``--llmperf-`` spelling is the one that works.  pytest-playwright, which provides
``--base-url`` itself when pytest-base-url is not installed, does the same at the same moment;
ours runs after it (an outer hook wrapper).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import types
from collections.abc import Generator
from typing import Any

import pytest

from pytest_llmperf.settings.options import OPTIONS, SHARED, Option

__all__ = [
    "ALIASES_PLUGIN",
    "AliasRegistrar",
    "install_aliases",
    "option_shape",
    "owned_aliases",
    "shared_value",
]

ALIASES_PLUGIN = "llmperf-aliases"


def option_shape(option: Option[Any]) -> dict[str, Any]:
    """The argparse shape of an option's flag and of its aliases."""
    shape: dict[str, Any] = {"metavar": option.name.upper()}
    if option.repeatable:
        shape["action"] = "append"
    elif option.is_switch:
        shape.update(nargs="?", const="yes")  # --llmperf-autosave alone means yes
    return shape


def _alias_help(option: Option[Any], alias: str) -> str:
    if alias in SHARED:
        shared = SHARED[alias]
        return (f"the same as {option.flag}; pytest-base-url registers this flag when it is "
                f"installed, and llmperf reads it (with its {shared.env} and ini {shared.ini}) "
                f"after {option.flag}, {option.env} and {option.ini}")
    return f"alias of {option.flag} (its old spelling)"


class AliasRegistrar:
    """Registers every alias no other plugin has, once all plugins are in (a pytest plugin of
    its own, ``llmperf-aliases``); remembers which it registered."""

    def __init__(self, group: pytest.OptionGroup, parser: pytest.Parser) -> None:
        self._group = group
        self._parser = parser
        self._done = False
        self.registered: set[str] = set()

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # the outermost wrapper: after every other
    def pytest_load_initial_conftests(self) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:  # also when a conftest fails to import: --help still shows the aliases
            self.register_free()

    def register_free(self, *, late: bool = False) -> None:
        """``late``: other plugins may still come (the initial conftests' pytest_plugins):
        a shared flag is left to the plugin that may register it, when it is installed."""
        if self._done:
            return
        self._done = True
        taken = _taken(self._parser, [alias for option in OPTIONS for alias in option.aliases])
        for option in OPTIONS:
            for alias in option.aliases:
                if alias in taken or (late and _provider_installed(alias)):
                    continue
                self._group.addoption(alias, dest=option.alias_dest(alias), default=None,
                                      help=_alias_help(option, alias), **option_shape(option))
                self.registered.add(alias)


def install_aliases(parser: pytest.Parser, group: pytest.OptionGroup,
                    pluginmanager: pytest.PytestPluginManager) -> None:
    """From the plugin's pytest_addoption: the aliases are registered once every plugin is
    in, or now when the plugin was loaded last, by an initial conftest's pytest_plugins
    (then --base-url only when neither pytest-base-url nor pytest-playwright is installed:
    either may register it after us; --llmperf-base-url always works)."""
    registrar = AliasRegistrar(group, parser)
    pluginmanager.register(registrar, ALIASES_PLUGIN)
    if _conftests_loading(pluginmanager):
        registrar.register_free(late=True)


def owned_aliases(config: pytest.Config) -> frozenset[str]:
    """The aliases this session's llmperf registered (the others belong to other plugins)."""
    registrar = config.pluginmanager.get_plugin(ALIASES_PLUGIN)
    return frozenset(registrar.registered) if isinstance(registrar, AliasRegistrar) else (
        frozenset())


def _conftests_loading(pluginmanager: pytest.PytestPluginManager) -> bool:
    """Whether the initial conftests are being loaded (or were): a conftest module is
    registered.  The plugin was then loaded by a conftest's pytest_plugins, too late for the
    hook that runs around that loading."""
    return any(isinstance(plugin, types.ModuleType)
               and os.path.basename(getattr(plugin, "__file__", None) or "") == "conftest.py"
               for plugin in pluginmanager.get_plugins())


def _provider_installed(alias: str) -> bool:
    shared = SHARED.get(alias)
    return shared is not None and any(importlib.util.find_spec(module) is not None
                                      for module in shared.modules)


def _taken(parser: pytest.Parser, flags: list[str]) -> set[str]:
    """The ``flags`` other plugins have registered: the command line's parser, built as
    pytest builds it, knows them (one build for all, else one for each)."""
    try:
        _namespace, unknown = parser.parse_known_and_unknown_args([f"{f}=x" for f in flags])
    except (argparse.ArgumentError, pytest.UsageError):
        if len(flags) == 1:
            return set(flags)  # registered twice already, or a flag that takes no value
        return {flag for flag in flags if _taken(parser, [flag])}
    return set(flags) - {arg.partition("=")[0] for arg in unknown}


def shared_value(config: pytest.Config, alias: str, ours: bool
                 ) -> tuple[str | None, str, tuple[str, str] | None]:
    """A shared flag's value (pytest-base-url's --base-url): (what was typed, the alias,
    what its plugin read from the environment or its ini value, with where).  Registered by
    the other plugin, the flag's value may be its environment variable's (its default) or its
    ini value (set in its pytest_configure): those count after llmperf's own spellings."""
    shared = SHARED[alias]
    given = config.getoption(shared.dest, None)
    value = str(given) if given not in (None, "") else None
    if ours:
        return value, alias, None
    env = os.environ.get(shared.env) or None
    try:
        ini_value: Any = config.getini(shared.ini)
        ini = str(ini_value) if ini_value else None
    except ValueError:  # the other plugin is not there: no such ini value
        ini = None
    if value is not None and value not in (env, ini):
        return value, alias, None
    if env is not None:
        return None, alias, (env, f"{shared.env} (environment)")
    if ini is not None:
        return None, alias, (ini, f"{shared.ini} (ini/pyproject)")
    return None, alias, None
