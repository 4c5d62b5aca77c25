"""`tfcli serve` as a real uvicorn process on 127.0.0.1, spoken to over real HTTP (urllib).

Answers are compared with what `tfcli translate` prints for the same lines, with the
memorising model (four sentences, four different translations) so that an answer that
reaches the wrong request shows.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tfcli.cli import app

KEY = "s3cret-key"
LINES = [  # the memorised four, other corpus-like lines, empty and unicode ones
    "der hund sieht den ball .",
    "der hund findet den vogel .",
    "die katze hört den ball .",
    "die frau mag einen baum .",
    "das kind ruft das wasser .",
    "der mann sieht das haus .",
    "Größe: 12 € — naïve Straße 😀",
    "",
]
CLIENTS = [LINES[i % 7] if i % 5 else f"{LINES[i % 4]} {LINES[(i + 1) % 4]}" for i in range(32)]


class Server:
    """`python -m tfcli serve ARGS --port 0` running; its URL read from what it prints."""

    def __init__(self, tmp: Path, *args: object, env: dict | None = None) -> None:
        self.log = tmp / "serve.err"
        env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
        with open(self.log, "w", encoding="utf-8") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tfcli", "serve", "--port", "0", "--quiet", *map(str, args)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            found = re.search(
                r"on (http://127\.0\.0\.1:\d+) ", self.log.read_text(encoding="utf-8")
            )
            if found:
                for _ in range(200):  # the socket listens; uvicorn answers once started
                    try:
                        if get(found.group(1) + "/health")[0] == 200:
                            return found.group(1)
                    except OSError:
                        time.sleep(0.05)
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the server did not start: {self.log.read_text(encoding='utf-8')}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def request(url: str, body: bytes | None = None, headers: dict | None = None):
    """(status, decoded JSON body) of a GET (no body) or POST."""
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(url: str, headers: dict | None = None):
    return request(url, None, headers)


def post(url: str, payload: object, headers: dict | None = None):
    headers = {"Content-Type": "application/json", **(headers or {})}
    return request(url, json.dumps(payload).encode(), headers)


def tfcli_translate(run: Path, lines: list[str], *args: str) -> list[str]:
    """What `tfcli translate` prints for `lines`, one row each."""
    proc = subprocess.run(
        [sys.executable, "-m", "tfcli", "translate", "-m", str(run), *args],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.fixture(scope="module")
def server(memorized_run, tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("serve"), "-m", memorized_run)
    yield running
    assert running.stop() in (0, -signal.SIGTERM)  # uvicorn ends with the signal it stopped on


@pytest.fixture(scope="module")
def expected(memorized_run) -> dict[str, str]:
    """What `tfcli translate` says for each of LINES and CLIENTS."""
    lines = [*LINES, *CLIENTS]
    return dict(zip(lines, tfcli_translate(memorized_run, lines)))


def translate_rows(run: Path, line: str, *args: str) -> list[list[str]]:
    """The tab-separated rows `tfcli translate ARGS` prints for `line` (in-process)."""
    result = CliRunner().invoke(app, ["translate", "-m", str(run), *args, line])
    assert result.exit_code == 0, result.output
    return [row.split("\t") for row in result.stdout.splitlines()]


def translate(server: Server, q: object, **fields: object):
    return post(server.url + "/translate", {"q": q, "source": "de", "target": "en", **fields})


# --- LibreTranslate's API --------------------------------------------------------------------


def test_a_text_gets_its_translation(server, expected):
    status, answer = translate(server, LINES[0])
    assert status == 200
    assert answer == {"translatedText": expected[LINES[0]]}


def test_a_list_gets_its_translations_in_order(server, expected):
    q = [LINES[3], "", LINES[0], LINES[6], LINES[2], ""]
    status, answer = translate(server, q)
    assert status == 200
    assert answer == {"translatedText": [expected[line] for line in q]}


def test_empty_and_unicode_texts(server, expected):
    assert translate(server, "") == (200, {"translatedText": ""})
    assert translate(server, []) == (200, {"translatedText": []})
    assert translate(server, LINES[6]) == (200, {"translatedText": expected[LINES[6]]})


def test_lines_of_a_text_are_translated_one_by_one(server, expected):
    status, answer = translate(server, f"{LINES[1]}\n{LINES[2]}")
    assert (status, answer["translatedText"]) == (
        200,
        f"{expected[LINES[1]]}\n{expected[LINES[2]]}",
    )


def test_alternatives_are_the_n_best_list(server, memorized_run):
    rows = translate_rows(memorized_run, LINES[0], "--n-best", "3")
    status, answer = translate(server, LINES[0], alternatives=2)
    assert status == 200
    assert answer == {"translatedText": rows[0][1], "alternatives": [rows[1][1], rows[2][1]]}
    status, answer = translate(server, [LINES[0]], alternatives=2)
    assert answer == {"translatedText": [rows[0][1]], "alternatives": [[rows[1][1], rows[2][1]]]}


def test_a_form_as_libretranslate_clients_send_it(server, expected):
    body = urllib.parse.urlencode({"q": LINES[2], "source": "auto", "target": "en"}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, answer = request(server.url + "/translate", body, headers)
    assert (status, answer) == (200, {"translatedText": expected[LINES[2]]})


# --- the native API, health and info ---------------------------------------------------------


def test_native_n_best_with_scores_and_alignments(server, memorized_run):
    rows = translate_rows(memorized_run, LINES[1], "--n-best", "2", "--alignment")
    payload = {"text": [LINES[1], ""], "n_best": 2, "scores": True, "alignment": True}
    status, answer = post(server.url + "/v1/translate", payload)
    assert status == 200
    first, empty = answer["translations"]
    hyps = [{"text": t, "score": float(s), "alignment": a} for _, t, s, a in rows]
    assert first == {**hyps[0], "hypotheses": hyps}
    assert empty["text"] == "" and len(empty["hypotheses"]) == 2
    status, answer = post(server.url + "/v1/translate", {"text": LINES[1], "beam": 1})
    assert (status, answer) == (200, {"translations": [{"text": rows[0][1]}]})


def test_health_info_and_languages(server, overfit):
    status, health = get(server.url + "/health")
    assert status == 200 and health["status"] == "ok"
    status, info = get(server.url + "/info")
    assert status == 200
    assert info["languages"] == {"source": "de", "target": "en"}
    assert info["parameters"] == sum(p.numel() for p in overfit.model.parameters())
    assert "path" not in info and "files" not in info
    assert get(server.url + "/languages") == (
        200,
        [{"code": "de", "name": "de", "targets": ["en"]}],
    )


# --- what is refused -------------------------------------------------------------------------


def test_malformed_json_is_a_400(server):
    headers = {"Content-Type": "application/json"}
    status, answer = request(server.url + "/translate", b'{"q": "x", "target": ', headers)
    assert status == 400 and answer["error"].startswith("malformed JSON at line 1 column")


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"source": "de", "target": "en"}, "q: required"),
        (
            {"q": "x", "target": "en", "alternative": 2},
            "alternative: unknown field; did you mean alternatives?",
        ),
        ({"q": ["a", 3], "target": "en"}, "q.1: input should be a valid string"),
        ({"q": "x", "target": "fr"}, "target: 'fr': this model translates into en"),
        ({"q": "x", "source": "it", "target": "en"}, "source: 'it': this model translates de"),
        (
            {"q": "x", "target": "en", "alternatives": -1},
            "alternatives: input should be greater than or equal to 0",
        ),
        ({"q": "x", "target": "en", "format": "html"}, "format: input should be 'text'"),
    ],
)
def test_a_wrong_field_is_a_400_that_names_it(server, payload, error):
    assert post(server.url + "/translate", payload) == (400, {"error": error})


def test_text_that_is_not_unicode_is_a_400(server):
    body = b'{"q": ["fine", "\\ud800"], "target": "en"}'  # JSON lets a lone surrogate through
    status, answer = request(server.url + "/translate", body, {"Content-Type": "application/json"})
    assert (status, answer) == (400, {"error": "q.1: not valid Unicode (a lone surrogate)"})
    assert get(server.url + "/health")[0] == 200  # and the server goes on


def test_wrong_native_fields_are_400s(server):
    assert post(server.url + "/v1/translate", {"text": "x", "beam": 0}) == (
        400,
        {"error": "beam: 0 is too small; expected at least 1"},
    )
    assert post(server.url + "/v1/translate", {"text": "x", "beam": 2, "n_best": 3}) == (
        400,
        {"error": "n_best: 3 exceeds beam (2)"},
    )
    assert post(server.url + "/v1/translate", {"text": "x", "scores": "yes"}) == (
        400,
        {"error": "scores: input should be a valid boolean"},
    )


def test_an_oversized_request_is_a_413(server):
    status, answer = translate(server, "a" * 100_001)
    assert status == 413 and answer == {"error": "q: 100001 characters; at most 100000 a request"}
    status, answer = translate(server, ["a"] * 1001)
    assert status == 413 and answer == {"error": "q: 1001 texts; at most 1000 a request"}
    # a body larger than any request can need is refused from its Content-Length, unread
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/translate")
    for name, value in (("Content-Type", "application/json"), ("Content-Length", "10000000")):
        conn.putheader(name, value)
    conn.endheaders()
    reply = conn.getresponse()
    assert reply.status == 413
    assert json.loads(reply.read())["error"].startswith("request body over")
    conn.close()


def test_unknown_paths_and_methods_are_json_errors(server):
    assert get(server.url + "/nothing") == (404, {"error": "Not Found"})
    assert get(server.url + "/translate") == (405, {"error": "Method Not Allowed"})


# --- batching ---------------------------------------------------------------------------------


def test_32_concurrent_clients_each_get_their_own_translation(server, expected):
    before = get(server.url + "/health")[1]
    start = threading.Barrier(32)

    def client(line: str):
        start.wait()
        return translate(server, line)

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(client, CLIENTS))
    assert answers == [(200, {"translatedText": expected[line]}) for line in CLIENTS]
    after = get(server.url + "/health")[1]
    requests, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    assert requests == 32 and batches < requests  # translated together


def test_the_server_answers_while_it_translates(server):
    long_texts = [" ".join([LINES[i % 6]] * 3) for i in range(1000)]
    done = threading.Event()

    def big():
        translate(server, long_texts)
        done.set()

    thread = threading.Thread(target=big)
    thread.start()
    while get(server.url + "/health")[1]["translating"] == 0 and not done.is_set():
        time.sleep(0.005)  # until the worker decodes the big request
    started = time.monotonic()
    status, _ = get(server.url + "/health")
    answered_in = time.monotonic() - started
    busy = not done.is_set()
    thread.join()
    assert status == 200 and busy and answered_in < 0.5


# --- keys, limits, start and stop ---------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(memorized_run, tmp_path_factory):
    """A server that wants a key (from the environment) and takes small requests."""
    tmp = tmp_path_factory.mktemp("keyed")
    args = ("-m", memorized_run, "--max-chars", 60, "--max-lines", 3)
    running = Server(tmp, *args, env={"TFCLI_API_KEY": KEY})
    yield running
    running.stop()


def test_a_key_is_asked_for_and_checked(keyed, expected):
    url, q = keyed.url + "/translate", {"q": LINES[0], "source": "de", "target": "en"}
    assert post(url, q)[0] == 401
    assert post(url, {**q, "api_key": "wrong"}) == (403, {"error": "the API key is not valid"})
    assert post(url, q, {"Authorization": "Bearer wrong"})[0] == 403
    answer = (200, {"translatedText": expected[LINES[0]]})
    assert post(url, {**q, "api_key": KEY}) == answer  # LibreTranslate's way
    assert post(url, q, {"Authorization": f"Bearer {KEY}"}) == answer
    assert post(url, q, {"X-API-Key": KEY}) == answer
    assert get(keyed.url + "/info")[0] == 401
    assert get(keyed.url + "/info", {"X-API-Key": KEY})[0] == 200
    assert get(keyed.url + "/health")[0] == 200  # for load balancers, without a key


def test_max_chars_and_max_lines_are_the_servers(keyed):
    url, key = keyed.url + "/translate", {"target": "en", "api_key": KEY}
    assert post(url, {"q": "a" * 60, **key})[0] == 200
    assert post(url, {"q": "a" * 61, **key}) == (
        413,
        {"error": "q: 61 characters; at most 60 a request"},
    )
    assert post(url, {"q": ["a"] * 4, **key}) == (413, {"error": "q: 4 texts; at most 3 a request"})


def test_every_accepted_request_is_answered_when_the_server_stops(memorized_run, tmp_path):
    running = Server(tmp_path, "-m", memorized_run)
    texts = [LINES[i % 6] for i in range(300)]
    with ThreadPoolExecutor(8) as pool:
        replies = [pool.submit(translate, running, texts) for _ in range(8)]
        while get(running.url + "/health")[1]["translating"] == 0:
            time.sleep(0.005)
        running.proc.send_signal(signal.SIGTERM)  # while requests are being translated
        statuses = [reply.result()[0] if reply.exception() is None else "lost" for reply in replies]
    assert running.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 503}, statuses


def test_a_port_in_use_is_one_line(memorized_run):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "-m", str(memorized_run), "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot listen on 127.0.0.1:{port} (Address already in use)\n"


def test_without_the_serve_extra_the_error_names_it(memorized_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    result = CliRunner().invoke(app, ["serve", "-m", str(memorized_run)])
    assert result.exit_code == 1
    assert result.stderr == "error: tfcli serve needs the serve extra: pip install 'tfcli[serve]'\n"
