"""No API key, and no credential in a URL, reaches a message, a record or a report.

The key lives in the environment variable named by ``--api-key-env`` and is sent only as an
``Authorization: Bearer`` header.  What is checked here, each on its own path:
- settings: a value of --api-key-env (it may be the key itself, pasted by mistake) is never
  shown; --base-url refuses credentials, a query and a fragment without echoing them; a key
  that would break or smuggle a header (a line break, a control character, a character
  outside Latin-1) is refused naming its variable, never showing the key; an international
  host name is sent as punycode;
- engines: readiness failures, the engine's name and the tokenizer's HTTP errors (which token
  counting stores in records) carry neither the key nor a URL's credentials, even from a server
  that echoes the Authorization header in its reason phrase.
"""

from __future__ import annotations

import base64
import dataclasses
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pytest_llmperf.clients.openai import Endpoint
from pytest_llmperf.clients.transport import Origin, request_head
from pytest_llmperf.engines.catalog import builtin_catalog
from pytest_llmperf.engines.llamacpp import LlamaCppBackend, LlamaCppTokenizer
from pytest_llmperf.engines.openai import OpenAIBackend
from pytest_llmperf.engines.server_tokenizer import VLLMTokenizer
from pytest_llmperf.load.token_count import count_missing_tokens
from pytest_llmperf.results.records import RequestRecord
from pytest_llmperf.settings import parsers
from pytest_llmperf.settings.groups import ServerSettings
from pytest_llmperf.settings.resolve import SettingError, resolve_settings, settings_from

SECRET = "sk-llmperf-unit-secret-7731"
PASSWORD = "pw-llmperf-unit-secret-0815"
BASIC = base64.b64encode(f"user:{PASSWORD}".encode()).decode()  # what requests makes of it
SPELLING = {"cli": "{flag} (command line)", "env": "{env} (environment)",
            "ini": "{ini} (ini/pyproject)"}
FLAGS = {"base_url": ("--base-url", "LLMPERF_BASE_URL", "llmperf_base_url"),
         "api_key_env": ("--api-key-env", "LLMPERF_API_KEY_ENV", "llmperf_api_key_env")}


def given(source: str, name: str, value: str) -> dict[str, dict[str, str]]:
    _flag, env, _ini = FLAGS[name]
    if source == "cli":
        return {"cli": {name: value}}
    if source == "env":
        return {"env": {env: value}}
    return {"ini": {name: value}}


def spelling(source: str, name: str) -> str:
    flag, env, ini = FLAGS[name]
    return SPELLING[source].format(flag=flag, env=env, ini=ini)


def error_of(tmp_path: Path, cli: dict[str, str] | None = None,
             env: dict[str, str] | None = None, ini: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingError) as info:
        resolve_settings(cli or {}, env or {}, ini or {}, tmp_path)
    return str(info.value)


def assert_no_secret(text: str) -> None:
    for secret in (SECRET, PASSWORD, BASIC):
        assert secret not in text, text


# --- --api-key-env: its value is never shown ------------------------------------------------

# Keys that are also valid variable names (so the name check lets them through), and a name.
PASTED_KEYS = ["hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "gsk_" + "q7Lm2Xv9" * 6 + "AbCd",
               "deadbeef" * 5, "xai_" + "Z" * 40, "LLMPERF_TEST_UNSET_KEY"]


@pytest.mark.parametrize("value", PASTED_KEYS)
@pytest.mark.parametrize("source", ["cli", "env", "ini"])
def test_an_unset_api_key_variable_is_named_by_its_source_not_its_value(
    tmp_path: Path, source: str, value: str
) -> None:
    message = error_of(tmp_path, **given(source, "api_key_env", value))
    assert value not in message
    assert value[:12] not in message and value[-12:] not in message
    assert message.startswith(f"{spelling(source, 'api_key_env')}: ")
    assert "is not set" in message
    # It says that the name is hidden, why, and what to check.
    assert "name is not shown" in message and "the key itself" in message, message
    assert f"{len(value)} characters" in message, message


def test_a_set_api_key_variable_resolves(tmp_path: Path) -> None:
    settings = resolve_settings({"api_key_env": "MY_KEY"}, {"MY_KEY": SECRET}, {}, tmp_path)
    assert settings.server.api_key_env == "MY_KEY"


# --- the key itself: refused at resolution when it would break the header ------------------

@pytest.mark.parametrize(
    ("key", "why"),
    [
        (SECRET + "\n", "line break"),
        (SECRET + "\r\n", "line break"),
        (SECRET + "\r\nX-Injected: 1", "line break"),
        (SECRET[:8] + "\x00" + SECRET[8:], "control character"),
        (SECRET + "\t", "control character"),
        (SECRET + "\x7f", "control character"),
        (SECRET + "\u0085", "control character"),
        (SECRET + "ключ", "outside Latin-1"),
        (SECRET + "\u2028", "outside Latin-1"),
        (" " + SECRET, "space"),
        (SECRET + " ", "space"),
    ],
    ids=["lf", "crlf", "header-injection", "nul", "tab", "del", "c1", "cyrillic", "u2028",
         "leading-space", "trailing-space"],
)
def test_a_key_that_would_break_the_header_is_refused_naming_its_variable(
    tmp_path: Path, key: str, why: str
) -> None:
    message = error_of(tmp_path, cli={"api_key_env": "MY_KEY"}, env={"MY_KEY": key})
    assert message.startswith("--api-key-env (command line): the API key in environment "
                              "variable MY_KEY "), message
    assert why in message, message
    assert SECRET not in message and SECRET[:10] not in message and SECRET[-6:] not in message


def test_settings_from_reads_the_key_variable_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMPERF_TEST_SCRIPT_KEY", SECRET)
    settings = settings_from(tmp_path, api_key_env="LLMPERF_TEST_SCRIPT_KEY")
    assert settings.server.api_key() == SECRET
    monkeypatch.setenv("LLMPERF_TEST_SCRIPT_KEY", SECRET + "\n")
    with pytest.raises(SettingError, match="line break") as info:
        settings_from(tmp_path, api_key_env="LLMPERF_TEST_SCRIPT_KEY")
    assert_no_secret(str(info.value))


# --- --base-url: no credentials, query or fragment, never echoed ---------------------------

CREDENTIALS = [
    f"http://user:{PASSWORD}@127.0.0.1:8000/v1",
    f"http://{PASSWORD}@127.0.0.1:8000/v1",
    f"https://:{PASSWORD}@api.example.com/v1",
    f"http://user:p@ss:{PASSWORD}@127.0.0.1:8000/v1",  # an unescaped @ in the password
    f"http://user:{PASSWORD}@127.0.0.1:8000",
    f"http://user:{PASSWORD}@/v1",  # and no host
    f"http://user:{PASSWORD}@127.0.0.1:99999/v1",  # and a bad port
    f"https://user:{PASSWORD}@[::1]:8000/v1",
]
QUERIES = [
    f"http://127.0.0.1:8000/v1?api_key={PASSWORD}",
    f"http://127.0.0.1:8000?key={PASSWORD}",
    f"http://127.0.0.1:8000/v1/?{PASSWORD}",
    "http://127.0.0.1:8000/v1?",
]
FRAGMENTS = [f"http://127.0.0.1:8000/v1#{PASSWORD}", f"http://127.0.0.1:8000/v1#key={PASSWORD}"]
MALFORMED = [  # refused for another reason first: still nothing echoed
    f"htp://user:{PASSWORD}@127.0.0.1:8000/v1",
    f"user:{PASSWORD}@127.0.0.1:8000/v1",
    f"http://user:{PASSWORD}@host name/v1",
    f"ftp://127.0.0.1/v1?key={PASSWORD}",
]


@pytest.mark.parametrize("value", CREDENTIALS)
@pytest.mark.parametrize("source", ["cli", "env", "ini"])
def test_base_url_with_credentials_is_refused_saying_where_the_key_goes(
    tmp_path: Path, source: str, value: str
) -> None:
    message = error_of(tmp_path, **given(source, "base_url", value))
    assert_no_secret(message)
    assert message.startswith(f"{spelling(source, 'base_url')}: invalid value "), message
    assert "***@" in message, message  # the value, with what was hidden marked
    assert "--api-key-env" in message, message


@pytest.mark.parametrize("value", QUERIES + FRAGMENTS)
def test_base_url_with_a_query_or_fragment_is_refused(tmp_path: Path, value: str) -> None:
    message = error_of(tmp_path, cli={"backend": "openai", "base_url": value})
    assert_no_secret(message)
    assert "--api-key-env" in message, message
    assert "query" in message or "fragment" in message, message


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_base_url_is_not_echoed_with_its_secrets(tmp_path: Path, value: str) -> None:
    message = error_of(tmp_path, cli={"backend": "openai", "base_url": value})
    assert_no_secret(message)
    assert "expected an http:// or https:// URL" in message, message


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("http://u:p@h/v1", "http://***@h/v1"),
        ("http://u:p@x@h:1/v1?k=v#f", "http://***@h:1/v1?***"),
        ("http://h/v1#f?g", "http://h/v1#***"),
        ("u:p@h", "***@h"),
        ("localhost:8000", "localhost:8000"),
        ("http://h:8000/v1", "http://h:8000/v1"),
    ],
)
def test_redact_url(value: str, shown: str) -> None:
    assert parsers.redact_url(value) == shown


# --- --base-url: host names and characters that would fail every request -------------------

@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://bücher.example:8000/v1", "http://xn--bcher-kva.example:8000/v1"),
        ("https://пример.рф/v1", "https://xn--e1afmkfd.xn--p1ai/v1"),
        ("http://BÜCHER.example/v1/", "http://xn--bcher-kva.example/v1"),
        ("http://127.0.0.1:8000/v1/modèle", "http://127.0.0.1:8000/v1/mod%C3%A8le"),
        ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
    ],
)
def test_an_international_host_is_sent_as_punycode(tmp_path: Path, value: str,
                                                    expected: str) -> None:
    settings = resolve_settings({"backend": "openai", "base_url": value}, {}, {}, tmp_path)
    assert settings.server.base_url == expected
    # What every request then does with it: an ASCII request head, no exception.
    url = Endpoint(base_url=expected, model="m").url
    head = request_head(Origin.parse(url), 2, {"Authorization": f"Bearer {SECRET}"},
                        keep_alive=True)
    assert head.isascii()


@pytest.mark.parametrize("value", ["http://" + "ü" * 64 + ".example/v1", "http://a..ü/v1",
                                   "http://127.0.0.1:8000/v1\x00", "http://127.0.0.1\x7f/v1",
                                   "http://127.0.0.1:8000/v1\x1b[2J"])
def test_a_host_or_path_no_request_could_carry_is_refused(tmp_path: Path, value: str) -> None:
    message = error_of(tmp_path, cli={"backend": "openai", "base_url": value})
    assert message.startswith("--base-url (command line): invalid value "), message
    assert "\x00" not in message and "\x1b" not in message and "\x7f" not in message


# --- engines: messages, names and tokenizer errors -----------------------------------------

class _Echo(http.server.BaseHTTPRequestHandler):
    """The most hostile answer: the status the test asks for, with the request's Authorization
    header as the reason phrase and the body."""

    status = 401

    def _answer(self) -> None:
        echoed = self.headers.get("Authorization", "none")
        if self.path.endswith("/models") and type(self).status == 200:
            body = b'{"data": [{"id": "m", "owned_by": "echo"}]}'
            self.send_response(200)
        else:
            body = echoed.encode()
            self.send_response(type(self).status, echoed)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[tuple[str, type[_Echo]]]:
    """``(root, handler)``: an echoing server at ``root``; set ``handler.status``."""
    handler = type("Echo", (_Echo,), {"status": 401})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("userinfo", ["", f"user:{PASSWORD}@"])
@pytest.mark.parametrize("tokenizer", ["llamacpp", "vllm"])
def test_a_tokenizer_http_error_carries_neither_key_nor_credentials(
    echo: tuple[str, type[_Echo]], tokenizer: str, userinfo: str
) -> None:
    where, _handler = echo
    root = f"http://{userinfo}{where}"
    counter = LlamaCppTokenizer(root, SECRET) if tokenizer == "llamacpp" \
        else VLLMTokenizer(root, "m", SECRET)
    with pytest.raises(requests.RequestException) as info:
        counter.encode("hello")
    text = f"{info.value} {info.value!r} {info.value.args}"
    assert_no_secret(text)
    assert "HTTP 401" in text and "/tokenize" in text, text


@pytest.mark.parametrize("userinfo", ["", f"user:{PASSWORD}@"])
def test_an_unreachable_tokenizer_error_carries_no_credentials(userinfo: str) -> None:
    counter = LlamaCppTokenizer(f"http://{userinfo}127.0.0.1:{_closed_port()}", SECRET)
    with pytest.raises(requests.RequestException) as info:
        counter.count_text("hello")
    text = f"{info.value} {info.value!r} {info.value.args}"
    assert_no_secret(text)
    assert "/tokenize" in text, text


def test_token_counting_stores_no_key_in_the_record(echo: tuple[str, type[_Echo]]) -> None:
    where, _handler = echo
    record = RequestRecord(request_id=1, send_ns=1, end_ns=2, output_text="an answer",
                           prompt_text="a prompt")
    [counted] = count_missing_tokens([record], LlamaCppTokenizer(f"http://{where}", SECRET))
    assert counted.error is not None and "HTTP 401" in counted.error, counted
    assert_no_secret(repr(dataclasses.asdict(counted)))


def _server_settings(tmp_path: Path, base_url: str) -> ServerSettings:
    """Settings attached to ``base_url`` as given (a library user may build them so, past the
    option parser), with the key in LLMPERF_TEST_SECRETS_KEY."""
    settings = resolve_settings({"backend": "openai", "base_url": "http://127.0.0.1:1/v1",
                                 "api_key_env": "LLMPERF_TEST_SECRETS_KEY"},
                                {"LLMPERF_TEST_SECRETS_KEY": SECRET}, {}, tmp_path)
    return dataclasses.replace(settings.server, base_url=base_url)


SMOLLM2 = builtin_catalog().entries["smollm2-135m"]


@pytest.mark.parametrize("backend", ["openai", "llamacpp"])
@pytest.mark.parametrize("status", [401, 403, 500])
def test_an_attach_refused_by_the_server_names_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, echo: tuple[str, type[_Echo]],
    backend: str, status: int,
) -> None:
    monkeypatch.setenv("LLMPERF_TEST_SECRETS_KEY", SECRET)
    where, handler = echo
    handler.status = status
    settings = _server_settings(tmp_path, f"http://{where}/v1")
    engine = OpenAIBackend() if backend == "openai" else LlamaCppBackend()
    with pytest.raises(ConnectionError) as info, engine.serve(settings, SMOLLM2, tmp_path):
        pass
    assert f"HTTP {status}" in str(info.value), info.value
    assert_no_secret(f"{info.value} {info.value!r}")


@pytest.mark.parametrize("backend", ["openai", "llamacpp"])
@pytest.mark.parametrize("where", ["userinfo", "query", "fragment"])
def test_an_attach_url_with_secrets_is_refused_without_echo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, echo: tuple[str, type[_Echo]],
    backend: str, where: str,
) -> None:
    """Built past the option parser: readiness would send the userinfo (requests turns it into
    Basic auth), the streaming client would not, and every request would then get 401."""
    monkeypatch.setenv("LLMPERF_TEST_SECRETS_KEY", SECRET)
    host, handler = echo
    handler.status = 200
    url = {"userinfo": f"http://user:{PASSWORD}@{host}/v1",
           "query": f"http://{host}/v1?key={PASSWORD}",
           "fragment": f"http://{host}/v1#{PASSWORD}"}[where]
    engine = OpenAIBackend() if backend == "openai" else LlamaCppBackend()
    with pytest.raises(ValueError) as info, \
            engine.serve(_server_settings(tmp_path, url), SMOLLM2, tmp_path):
        pass
    assert "--api-key-env" in str(info.value), info.value
    assert_no_secret(f"{info.value} {info.value!r}")


def test_an_unreachable_attach_names_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMPERF_TEST_SECRETS_KEY", SECRET)
    settings = _server_settings(tmp_path, f"http://127.0.0.1:{_closed_port()}/v1")
    with pytest.raises(ConnectionError) as info, \
            OpenAIBackend().serve(settings, SMOLLM2, tmp_path):
        pass
    assert "cannot reach the server" in str(info.value)
    assert_no_secret(str(info.value))


def test_an_attached_servers_name_carries_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, echo: tuple[str, type[_Echo]]
) -> None:
    monkeypatch.setenv("LLMPERF_TEST_SECRETS_KEY", SECRET)
    host, handler = echo
    handler.status = 200
    with OpenAIBackend().serve(_server_settings(tmp_path, f"http://{host}/v1"), SMOLLM2,
                               tmp_path) as served:
        assert served.engine == f"OpenAI-compatible server (echo) at http://{host}/v1"
        assert served.tokenizer is None  # its /tokenize answered 200 with no tokens
        assert served.endpoint is not None and served.endpoint.api_key == SECRET
        assert_no_secret(repr(served))


@pytest.mark.parametrize("backend", ["openai", "llamacpp"])
def test_a_key_that_turned_bad_after_resolution_is_refused_at_attach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, echo: tuple[str, type[_Echo]],
    backend: str,
) -> None:
    """The key is read from its variable when needed, not at resolution: checked again there
    (requests' own error would quote the whole header)."""
    host, handler = echo
    handler.status = 200
    monkeypatch.setenv("LLMPERF_TEST_SECRETS_KEY", SECRET)
    settings = _server_settings(tmp_path, f"http://{host}/v1")
    monkeypatch.setenv("LLMPERF_TEST_SECRETS_KEY", " " + SECRET + "\r\n")
    engine = OpenAIBackend() if backend == "openai" else LlamaCppBackend()
    with pytest.raises(ValueError) as info, engine.serve(settings, SMOLLM2, tmp_path):
        pass
    assert str(info.value).startswith(
        "--api-key-env (command line): the API key in environment variable "
        "LLMPERF_TEST_SECRETS_KEY holds a line break"), info.value
    assert_no_secret(f"{info.value} {info.value!r}")


@pytest.mark.parametrize("status", [401, 403])
def test_an_answer_refusing_the_credentials_is_not_kept(status: int) -> None:
    from pytest_llmperf.clients.http import Exchanged, status_message

    said = status_message(Exchanged(0, status, False, b"bad key sk-KEY-123"),
                          "bad key sk-KEY-123", "sk-KEY-123")
    assert "sk-KEY-123" not in said
    assert said.startswith(f"HTTP {status}: the server refused the request's credentials")


def test_any_other_answer_has_the_key_masked() -> None:
    from pytest_llmperf.clients.http import Exchanged, status_message

    said = status_message(Exchanged(0, 500, False), "upstream failed for token sk-KEY-123",
                          "sk-KEY-123")
    assert said == "HTTP 500: upstream failed for token [API key]"
