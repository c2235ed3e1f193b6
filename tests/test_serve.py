"""`nlclf serve` as a real subprocess on a free loopback port, spoken to over real HTTP
(http.client and raw sockets): the same results as `nlclf predict`, every bad request a 4xx
JSON answer, signals, reload, workers, logs."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'nlclf[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'nlclf[serve]')")

from conftest import BASE_CONFIG, ENV, PREDICT_LINES, REPO, TIMEOUT, write_tsv  # noqa: E402

LINES = [t for t, _ in PREDICT_LINES] + ["goal cheese", "the new very server"]


class Server:
    """`nlclf serve MODEL --port 0 ...` started and read: its port from the first stderr line,
    the rest of stderr collected by a thread."""

    def __init__(self, model, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "nlclf", "serve", str(model), "--port", "0", *map(str, args)],
                                     cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list = []
        self.first = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.first.wait(TIMEOUT):
            self.proc.kill()
            raise AssertionError("the server did not start")
        assert "on http://127.0.0.1:" in self.lines[0], self.lines
        self.port = int(self.lines[0].split("127.0.0.1:")[1].split()[0])

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self.first.set()
        self.first.set()

    def request(self, method: str, path: str, body=None, headers=None, timeout=TIMEOUT):
        """(status, decoded JSON or text, headers) of one request on a new connection."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        kind = r.getheader("content-type", "")
        return r.status, (json.loads(data) if "json" in kind else data.decode()), r

    def predict(self, **body):
        status, obj, _ = self.request("POST", "/predict", body)
        assert status == 200, obj
        return obj["results"]

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(TIMEOUT)
        self.proc.stdout.close()
        return code


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny model trained through the API, its input lines in a file, and a server on it."""
    import nlclf
    root = tmp_path_factory.mktemp("serve")
    for split, n, seed in (("train", 40, 1), ("dev", 10, 2), ("test", 10, 3)):
        write_tsv(root / f"{split}.tsv", n, seed)
    cfg = json.loads(json.dumps(BASE_CONFIG))
    model_dir = nlclf.train(cfg, out=root / "model", data_root=root, load_model=False).path
    (root / "lines.txt").write_text("".join(t + "\n" for t in LINES), encoding="utf-8")
    server = Server(model_dir, "--max-texts", 20, "--max-bytes", 4096)
    yield {"root": root, "model": model_dir, "server": server}
    server.stop()


def predict_cli(world, *args) -> list:
    r = subprocess.run([sys.executable, "-m", "nlclf", "predict", str(world["model"]), str(world["root"] / "lines.txt"),
                        "--format", "jsonl", *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


@pytest.mark.parametrize("cli_args, body", [
    ((), {}),
    (("--top-k", "2"), {"k": 2}),
    (("--top-k", "-1"), {"k": -1}),
    (("--threshold", "0.3"), {"threshold": 0.3}),
    (("--explain", "3"), {"explain": 3}),
])
def test_the_results_are_nlclf_predicts(world, cli_args, body):
    assert world["server"].predict(texts=LINES, **body) == predict_cli(world, *cli_args)


def test_concurrent_requests_are_batched_and_answered_in_order(world):
    """Single-text and many-text requests at once, each answered with its own texts' results."""
    expected = predict_cli(world, "--top-k", "2")
    server = world["server"]
    jobs = [[i] for i in range(len(LINES))] * 4 + [list(range(len(LINES)))] * 4
    with ThreadPoolExecutor(16) as ex:
        answers = list(ex.map(lambda idx: server.predict(texts=[LINES[i] for i in idx], k=2), jobs))
    for idx, got in zip(jobs, answers):
        want = [expected[i] for i in idx]
        assert [r["label"] for r in got] == [r["label"] for r in want]
        assert [[t["label"] for t in r["top"]] for r in got] == [[t["label"] for t in r["top"]] for r in want]
        assert all(abs(a["proba"] - b["proba"]) <= 2e-6 for a, b in zip(got, want))


def test_without_probabilities(world):
    got = world["server"].predict(texts=LINES[:3], k=2, proba=False)
    assert got == [{"label": r["label"], "top": [{"label": t["label"]} for t in r["top"]]}
                   for r in predict_cli(world, "--top-k", "2")[:3]]


BAD = [  # (body, status, words the message holds)
    (b"", 400, "empty"),
    (b'{"texts": ["a"', 400, "malformed JSON"),
    (b"not json", 400, "malformed JSON"),
    (b'{"texts": ["caf\xe9"]}', 400, "not UTF-8"),
    (b'{"texts": ["\\ud800"]}', 400, "surrogate"),
    (b'["a"]', 422, "JSON object"),
    (b'"a"', 422, "JSON object"),
    (b"{}", 422, "texts is missing"),
    (b'{"texts": []}', 422, "texts is empty"),
    (b'{"texts": "a text"}', 422, "array of strings"),
    (b'{"texts": null}', 422, "array of strings"),
    (b'{"texts": ["a", 3]}', 422, "texts[1] must be a string"),
    (b'{"texts": [["a"]]}', 422, "texts[0] must be a string"),
    (b'{"texts": ["a"], "k": 0}', 422, "k must be"),
    (b'{"texts": ["a"], "k": "2"}', 422, "k must be"),
    (b'{"texts": ["a"], "k": 1.5}', 422, "k must be"),
    (b'{"texts": ["a"], "k": true}', 422, "k must be"),
    (b'{"texts": ["a"], "threshold": 2}', 422, "threshold must be"),
    (b'{"texts": ["a"], "threshold": NaN}', 422, "threshold must be"),
    (b'{"texts": ["a"], "proba": 1}', 422, "proba must be"),
    (b'{"texts": ["a"], "explain": -1}', 422, "explain must be"),
    (b'{"texts": ["a"], "explain": 5000}', 422, "explain must be"),
    (b'{"text": ["a"]}', 422, "unknown field"),
    (json.dumps({"texts": ["a"] * 21}).encode(), 413, "--max-texts"),
    (json.dumps({"texts": ["a" * 5000]}).encode(), 413, "--max-bytes"),
    (b"[" * 4000, 400, "nested too deeply"),
]


@pytest.mark.parametrize("body, status, words", BAD, ids=[f"{s}-{w}" for _, s, w in BAD])
def test_a_bad_request_gets_a_4xx_json_error(world, body, status, words):
    got, obj, _ = world["server"].request("POST", "/predict", body, {"Content-Type": "application/json"})
    assert got == status, obj
    assert obj["status"] == status and words in obj["error"], obj


def test_a_body_over_the_limit_sent_in_chunks_gets_413(world):
    """No Content-Length (chunked transfer): the limit is counted as the body arrives."""
    c = http.client.HTTPConnection("127.0.0.1", world["server"].port, timeout=TIMEOUT)
    c.request("POST", "/predict", body=iter([b'{"texts": ["', b"a" * 3000, b"a" * 3000, b'"]}']),
              encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    r = c.getresponse()
    assert r.status == 413 and "--max-bytes" in json.loads(r.read())["error"]


@pytest.mark.parametrize("method, path, status", [("GET", "/nowhere", 404), ("GET", "/predict", 405),
                                                  ("DELETE", "/labels", 405)])
def test_unknown_routes_and_methods_get_json(world, method, path, status):
    got, obj, _ = world["server"].request(method, path)
    assert got == status and obj["status"] == status


def test_health_labels_metadata_and_docs(world):
    import nlclf
    server, model = world["server"], nlclf.load(world["model"])
    status, health, _ = server.request("GET", "/health")
    assert status == 200 and health == {"status": "ok", "checksum": model.checksum}
    assert server.request("GET", "/labels")[1] == {"labels": ["food", "sport", "tech"]}
    meta = server.request("GET", "/metadata")[1]
    assert meta["labels"] == model.labels and meta["checksum"] == model.checksum
    assert meta["config"]["model"]["hidden"] == [16] and meta["nlclf_version"] == nlclf.__version__
    assert meta["server"]["max_texts"] == 20 and meta["server"]["max_bytes"] == 4096
    schema = server.request("GET", "/openapi.json")[1]
    assert {"/predict", "/health", "/labels", "/metadata", "/reload"} <= set(schema["paths"])
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["texts"]
    status, page, _ = server.request("GET", "/docs")
    assert status == 200 and "openapi.json" in page


def test_one_log_line_per_request(world):
    """Two requests, two lines, in order. The lines are read from the server's stderr by a
    thread, so an earlier test's request (GET /docs) may still be arriving: only the lines of
    POST requests after ``before`` are this test's."""
    server = world["server"]
    before = len(server.lines)
    server.predict(texts=["goal", "pasta"])
    server.request("POST", "/predict", b"{}")
    ours = lambda: [l for l in server.lines[before:] if " POST " in l]
    deadline = time.monotonic() + 10
    while len(ours()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)                                   # a third line, were there one, would be here by now
    new = ours()
    assert len(new) == 2, new
    assert "POST /predict 200 texts=2 " in new[0] and new[0].endswith(" ms")
    assert "POST /predict 422 " in new[1]


def test_loopback_by_default_and_said(world):
    assert "loopback only" in world["server"].lines[0]


def _send_partial(port: int, body: bytes, cut: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:cut])
    return s


def _response(s: socket.socket) -> tuple:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    while len(rest) < length:
        chunk = s.recv(65536)
        assert chunk
        rest += chunk
    return int(head.split()[1]), json.loads(rest[:length])


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_during_a_request_drains_it_then_exits(world, sig, code):
    """The request is half sent when the signal comes: it is still answered in full, new
    connections are refused, and the server exits 0 (SIGTERM) or 130 (SIGINT)."""
    server = Server(world["model"], "--quiet")
    body = json.dumps({"texts": LINES, "k": 2}).encode()
    s = _send_partial(server.port, body, len(body) // 2)
    time.sleep(0.5)                                       # the server has the headers: the request is in flight
    server.proc.send_signal(sig)
    time.sleep(0.5)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).recv(1)
    s.sendall(body[len(body) // 2:])
    status, obj = _response(s)
    s.close()
    assert status == 200 and obj["results"] == predict_cli(world, "--top-k", "2")
    assert server.proc.wait(TIMEOUT) == code              # by itself (a second signal would cut it short)
    server.stop()
    assert server.lines[1:] == [], server.lines           # --quiet: nothing after the start line


def test_reload_picks_up_a_replaced_model_only_when_asked(world, tmp_path):
    import nlclf
    folder = tmp_path / "m"
    shutil.copytree(world["model"], folder)
    server = Server(folder, "--quiet")
    try:
        old = server.request("GET", "/health")[1]["checksum"]
        other = nlclf.train(json.loads(json.dumps(BASE_CONFIG)), out=tmp_path / "other", data_root=world["root"],
                            load_model=False, seed=8, hidden=[8]).path
        shutil.rmtree(folder)
        shutil.copytree(other, folder)
        assert server.request("GET", "/health")[1]["checksum"] == old          # not before /reload
        status, obj, _ = server.request("POST", "/reload")
        assert status == 200 and obj["changed"] and obj["previous"] == old
        new = nlclf.load(folder)
        assert obj["checksum"] == new.checksum != old
        assert server.request("GET", "/metadata")[1]["config"]["model"]["hidden"] == [8]
        assert [r["label"] for r in server.predict(texts=LINES)] == new.predict(LINES)
        (folder / "model.json").write_text("{")                                  # now broken: kept serving
        status, obj, _ = server.request("POST", "/reload")
        assert status == 409 and new.checksum in obj["error"]
        assert server.request("GET", "/health")[1]["checksum"] == new.checksum
        shutil.rmtree(folder)
        shutil.copytree(world["model"], folder)
        server.proc.send_signal(signal.SIGHUP)                                  # SIGHUP reloads too
        deadline = time.monotonic() + TIMEOUT
        while server.request("GET", "/health")[1]["checksum"] != old and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.request("GET", "/health")[1]["checksum"] == old
    finally:
        assert server.stop() == 0


def test_two_workers_share_the_port_and_stop_on_sigterm(world):
    server = Server(world["model"], "--workers", 2, "--quiet")
    try:
        pids = set()
        deadline = time.monotonic() + TIMEOUT
        while len(pids) < 2 and time.monotonic() < deadline:
            pids.add(server.request("GET", "/metadata")[1]["server"]["pid"])
        assert len(pids) == 2 and server.proc.pid not in pids
        assert server.predict(texts=LINES, k=2) == predict_cli(world, "--top-k", "2")
    finally:
        assert server.stop() == 0


def test_a_missing_model_is_an_error_before_listening(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nlclf", "serve", str(tmp_path / "nothing")], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 4 and "no such model folder" in r.stderr and "Traceback" not in r.stderr
