"""Value parsers of the llmperf options: each turns an option's text into its value or raises
``ValueError`` saying what it expected (:func:`pytest_llmperf.settings.resolve.resolve_settings`
adds the value and where it came from).  Imports nothing heavy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from pytest_llmperf.results.rate_stages import RateStage

__all__ = ["BACKENDS"]  # and the parsers, used by pytest_llmperf.settings.options

BACKENDS: tuple[str, ...] = (
    "llamacpp", "transformers", "vllm", "sglang", "lmdeploy", "tgi", "ollama", "xinference",
    "openai",
)
T = TypeVar("T")


def choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if number < minimum:
            raise ValueError(f"expected a whole number >= {minimum}")
        return number

    return parse


def list_of(parse: Callable[[str], T]) -> Callable[[str], tuple[T, ...]]:
    """A comma list, each item parsed by ``parse``; duplicates are dropped, order kept."""

    def parse_list(value: str) -> tuple[T, ...]:
        items = [item.strip() for item in value.split(",")]
        if not all(items):
            raise ValueError("expected a comma-separated list with no empty items")
        parsed: list[T] = []
        for item in items:
            try:
                one = parse(item)
            except ValueError as exc:
                raise ValueError(f"{item!r}: {exc}") from None
            if one not in parsed:
                parsed.append(one)
        return tuple(parsed)

    return parse_list


def image_size(value: str) -> tuple[int, int]:
    """``512x512`` -> (512, 512); each side 1..8192 pixels."""
    width, sep, height = value.strip().lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise ValueError("expected WIDTHxHEIGHT in pixels, such as 512x512")
    size = int(width), int(height)
    if not all(1 <= side <= 8192 for side in size):
        raise ValueError("each side must be 1 to 8192 pixels")
    return size


def image_sizes(value: str) -> tuple[tuple[int, int], ...]:
    """``512x512,1024x768``: image sizes in pixels, each side 1..8192."""
    return list_of(image_size)(value)


def gpu_sets(value: str) -> tuple[tuple[int, ...], ...]:
    """``0,1`` or, one set per pytest-xdist worker, ``0,1|2,3``."""
    sets: list[tuple[int, ...]] = []
    for part in value.split("|"):
        try:
            ids = tuple(int(item) for item in part.split(","))
        except ValueError:
            raise ValueError("expected GPU indices such as 0,1 (or 0,1|2,3: one set per "
                             "pytest-xdist worker)") from None
        if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
            raise ValueError(f"GPU set {part!r} has a negative or repeated index")
        sets.append(ids)
    seen = [i for ids in sets for i in ids]
    if len(set(seen)) != len(seen):
        raise ValueError("the GPU sets of different workers must not share a GPU")
    return tuple(sets)


def _number(value: str, accept: Callable[[float], bool], not_a_number: str,
            out_of_range: str) -> float:
    """``value`` as a float that ``accept`` takes; else ValueError with the message."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError(not_a_number) from None
    if not accept(number):
        raise ValueError(out_of_range)
    return number


def seconds(value: str) -> float:
    return _number(value, lambda n: 0 < n < 86400, "expected a number of seconds",
                   "expected a number of seconds greater than 0")


def seconds_or_zero(value: str) -> float:
    return _number(value, lambda n: 0 <= n < 86400, "expected a number of seconds",
                   "expected a number of seconds, 0 or more")


def rate(value: str) -> float:
    """Requests per second: a number > 0, or ``inf`` (every request at once)."""
    if value.strip().lower() in ("inf", "infinity"):
        return math.inf
    expected = "expected requests per second: a number > 0, or inf"
    return _number(value, lambda n: n > 0 and math.isfinite(n), expected, expected)


def positive_number(value: str) -> float:
    expected = "expected a number greater than 0"
    return _number(value, lambda n: n > 0 and math.isfinite(n), expected, expected)


def time_slice(value: str) -> tuple[float, float | None]:
    """``START:END`` seconds (``START:`` to the end, ``:END`` from the start), START < END."""
    expected = ("expected START:END in seconds of the trace (e.g. 60:180, 60: or :120), "
                "START below END")
    start_text, colon, end_text = value.partition(":")
    if not colon:
        raise ValueError(expected)
    start = 0.0 if not start_text.strip() else _number(
        start_text, lambda n: n >= 0 and math.isfinite(n), expected, expected)
    end = None if not end_text.strip() else _number(
        end_text, lambda n: n > start and math.isfinite(n), expected, expected)
    return start, end


def rate_stages(value: str) -> tuple[RateStage, ...]:
    """``1:60,1..4:30,4:120``: results.rate_stages."""
    from pytest_llmperf.results.rate_stages import parse_rate_stages

    return parse_rate_stages(value)


def fraction(value: str) -> float:
    return _number(value, lambda n: 0 < n <= 1, "expected a number between 0 and 1",
                   "expected a number greater than 0 and at most 1")


def engine_args(value: str) -> Mapping[str, tuple[str, ...]]:
    """``vllm: --swap-space 4; sglang: --mem-fraction-static 0.8`` -> per-backend argv."""
    import shlex

    args: dict[str, tuple[str, ...]] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        backend, sep, rest = part.partition(":")
        backend = backend.strip()
        if not sep or backend not in BACKENDS:
            raise ValueError(
                f"{part.strip()!r}: expected BACKEND: ARGS with BACKEND one of "
                f"{', '.join(BACKENDS)}, several separated by ';'"
            )
        args[backend] = args.get(backend, ()) + tuple(shlex.split(rest))
    return args


def per_backend_path(value: str) -> Mapping[str, Path]:
    """``/venv/bin/python`` (every backend, key ``*``) or ``vllm: PATH; sglang: PATH``."""
    if ":" not in value.split("/")[0]:
        return {"*": Path(value.strip()).expanduser()}
    paths: dict[str, Path] = {}
    for backend, args in engine_args(value).items():
        if len(args) != 1:
            raise ValueError(f"{backend}: expected one path, got {len(args)} words")
        paths[backend] = Path(args[0]).expanduser()
    return paths


def text(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty value")
    return value.strip()


# C0 and C1 control characters and DEL: no request line or header may carry them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Where a URL is given, and what goes there instead of its secrets.
_KEY_GOES = ("put the API key in an environment variable and give its name with "
             "--llmperf-api-key-env (or --api-key-env; it is sent as an Authorization: Bearer "
             "header)")


def url(value: str) -> str:
    """An http(s) base URL with no credentials, query or fragment (the requests' paths are
    appended to it, and a secret in it would be copied into reports and messages); an
    international host name becomes punycode and a non-ASCII path is percent-encoded, as
    every request must carry them."""
    expected = "expected an http:// or https:// URL such as http://127.0.0.1:8000/v1"
    if _CONTROL.search(value):
        raise ValueError(f"{expected}: it holds a control character")
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError(expected)
    if "@" in value:  # anywhere: an unescaped '/' or '?' in a password moves it past the host
        raise ValueError(f"{expected}, with no user or password in it: the requests do not "
                         f"send them; {_KEY_GOES}")
    for mark, name in (("?", "query"), ("#", "fragment")):
        if mark in value:
            raise ValueError(f"{expected}, with no {name} ({mark}...): the requests' paths are "
                             f"appended to the URL; for an API key, {_KEY_GOES}")
    parts = urlsplit(value)
    try:
        port = parts.port  # raises on a port that is not a number in 0-65535
    except ValueError:
        raise ValueError(f"{expected}: the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{expected}: it names no host")
    netloc = parts.netloc
    if not netloc.isascii():
        try:
            host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"{expected}: its host {parts.hostname!r} is not a valid "
                             "international domain name") from None
        netloc = host if port is None else f"{host}:{port}"
    path = "".join(c if c.isascii() else quote(c, safe="") for c in parts.path)
    return f"{parts.scheme}://{netloc}{path}".rstrip("/")


def urls(value: str) -> str:
    """One base URL, or several comma-separated (replicas of one deployment), each as
    :func:`url` takes it; the same URL twice is refused (one server counted as two)."""
    items = [item.strip() for item in value.split(",")]
    parsed: list[str] = []
    for item in items:
        try:
            one = url(item)
        except ValueError as exc:
            if len(items) == 1:
                raise
            raise ValueError(f"{redact_url(item)!r}: {exc}") from None
        if one in parsed:
            raise ValueError(f"{one} is given twice: each replica's URL once")
        parsed.append(one)
    return ",".join(parsed)


def redact_url(value: str) -> str:
    """``value`` (a URL, or text that failed to be one) fit for a message: anything before an
    '@' after the scheme becomes ``***@``, and a query or fragment ``?***`` or ``#***``."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    if "@" in rest:  # the last '@': a password may hold one unescaped
        rest = "***@" + rest.rsplit("@", 1)[1]
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    if cut >= 0:
        rest = rest[:cut + 1] + "***"
    return scheme + sep + rest


_URL_IN_TEXT = re.compile(r"[A-Za-z][\w+.-]*://[^\s;'\"]*")


def redact_urls_in(text: str) -> str:
    """``text`` with every URL in it as :func:`redact_url` shows one."""
    return _URL_IN_TEXT.sub(lambda url: redact_url(url.group()), text)


def api_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be sent in an HTTP header as it is (never quoting it), or None."""
    if "\n" in key or "\r" in key:
        return ("holds a line break (a key read from a file often ends in one): remove it; "
                "a line break would end the Authorization header")
    if _CONTROL.search(key):
        return "holds a control character, which no HTTP header may carry"
    try:
        key.encode("latin-1")
    except UnicodeEncodeError:
        return ("holds a character outside Latin-1, which an HTTP header cannot carry (API "
                "keys are ASCII: check what was exported)")
    if key != key.strip(" "):
        return ("starts or ends with a space, which HTTP drops from a header (the server would "
                "get another key)")
    return None


def env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError("expected the NAME of an environment variable (not the key itself)")
    return value


def yes_no(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off"):
        return False
    raise ValueError("expected yes or no")


def run_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
        raise ValueError("expected a name of letters, digits, '.', '_' or '-' (at most 64), "
                         "such as before-upgrade")
    return value


def path(value: str) -> Path:
    return Path(text(value)).expanduser()


def baseline(value: str) -> str:
    """A saved run's name, ``latest``, or the path of a result document (``.json``)."""
    if value.endswith(".json"):
        return str(path(value))
    return run_name(value)


def gates(value: str) -> tuple[Any, ...]:
    """Regression gates: ``tpot_ms.p95:10%,ttft_ms.p95:50ms`` (results.thresholds.Gate)."""
    from pytest_llmperf.results.thresholds import ThresholdError, parse_gate

    gates = []
    for item in list_of(text)(value):  # no gate holds a comma
        try:
            gates.append(parse_gate(item, "--llmperf-compare-fail"))
        except ThresholdError as exc:  # "ORIGIN: 'ITEM': what is wrong": resolve names both
            raise ValueError(f"{item!r}: {str(exc).split(': ', 2)[-1]}") from None
    return tuple(gates)
