"""The HTTP server: `nlclf serve`, JSON over HTTP on FastAPI and uvicorn (the serve extra).

Routes: POST /predict, GET /health, /labels, /metadata, POST /reload, the OpenAPI schema at
/openapi.json and its pages at /docs. Requests are read, checked and answered on the event
loop; texts are scored on one thread beside it, in micro-batches: whatever requests wait when
the scorer becomes free are scored together (at most MAX_BATCH texts), and while other
requests are still being read the scorer waits up to MAX_WAIT for them. A lone request is
scored at once. Every bad request gets a 4xx JSON body {"error": message, "status": code}.

Signals: SIGTERM stops accepting connections, finishes the requests in flight and exits 0;
SIGINT does the same and exits 130 (a second one stops at once); SIGHUP reloads the model.
With several workers (forked after the model is loaded, so they share its pages) the main
process forwards each signal to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import __version__, api
from .errors import CheckpointError, NlclfError
from .explain import explain as explain_texts
from .predict import decided_labels, resolve_k
from .report import prediction_record
from .runtime import blas_threads

try:                             # the serve extra; without it serve() says how to install it
    from fastapi import FastAPI, Request
except ImportError:              # pragma: no cover
    FastAPI = Request = None

MAX_BATCH = 256              # texts scored together at most (a request with more is scored alone)
MAX_WAIT = 0.002             # seconds the scorer waits for requests still being read
MAX_EXPLAIN = 1000           # features an explanation may list each way
SWITCH_INTERVAL = 0.0005    # seconds the scoring thread may hold the GIL while requests wait (Python's default: 0.005)
DISCARD_BYTES = 64 << 20     # an over-long body is read (and dropped) up to this, so the client sees the 413


@dataclass(frozen=True)
class Settings:
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_texts: int = 1000
    max_bytes: int = 1 << 20
    quiet: bool = False
    drain_seconds: float = 30.0


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    """One /predict request: its texts and options, and the future its answer goes to."""

    texts: list
    k: int
    threshold: float | None
    proba: bool
    explain: int
    future: asyncio.Future
    allow_empty: bool = False


# --- reading a request -----------------------------------------------------------------------

FIELDS = {"texts", "k", "threshold", "proba", "explain", "allow_empty"}


def _type(v) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def parse_predict(body: bytes, max_texts: int) -> dict:
    """The options of a /predict body, checked; BadRequest names the first problem."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(400, f"the body is not UTF-8: byte 0x{body[e.start]:02x} at offset {e.start}") from None
    if not text.strip():
        raise BadRequest(400, 'the body is empty: send a JSON object like {"texts": ["a text"]}')
    try:
        req = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRequest(400, f"malformed JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except RecursionError:
        raise BadRequest(400, "malformed JSON: nested too deeply") from None
    if not isinstance(req, dict):
        raise BadRequest(422, f'the body must be a JSON object like {{"texts": ["..."]}}; got {_type(req)}')
    unknown = sorted(set(req) - FIELDS)
    if unknown:
        raise BadRequest(422, f"unknown field(s) {', '.join(map(repr, unknown))}; a request has "
                              f"{', '.join(sorted(FIELDS))}")
    if "texts" not in req:
        raise BadRequest(422, 'texts is missing: give {"texts": ["a text", ...]}')
    texts = req["texts"]
    if not isinstance(texts, list):
        raise BadRequest(422, f"texts must be an array of strings; got {_type(texts)}")
    if not texts:
        raise BadRequest(422, "texts is empty: give at least one text")
    if len(texts) > max_texts:
        raise BadRequest(413, f"{len(texts)} texts is more than this server takes in one request ({max_texts}, "
                              f"--max-texts): split them")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise BadRequest(422, f"texts[{i}] must be a string; got {_type(t)}")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:
            raise BadRequest(400, f"texts[{i}] is not valid Unicode: a lone surrogate \\u{ord(t[e.start]):04x} "
                                  f"at character {e.start}") from None
    k, threshold = req.get("k"), req.get("threshold")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k == 0 or k < -1):
        raise BadRequest(422, f"k must be a positive integer, or -1 for every label; got {json.dumps(k)}")
    if threshold is not None and (not isinstance(threshold, (int, float)) or isinstance(threshold, bool)
                                  or not 0 <= threshold <= 1):
        raise BadRequest(422, f"threshold must be a number from 0 to 1, or null; got {json.dumps(threshold)}")
    proba = req.get("proba", True)
    if not isinstance(proba, bool):
        raise BadRequest(422, f"proba must be true or false; got {json.dumps(proba)}")
    allow_empty = req.get("allow_empty", False)
    if not isinstance(allow_empty, bool):
        raise BadRequest(422, f"allow_empty must be true or false; got {json.dumps(allow_empty)}")
    explain = req.get("explain", 0)
    if not isinstance(explain, int) or isinstance(explain, bool) or not 0 <= explain <= MAX_EXPLAIN:
        raise BadRequest(422, f"explain must be an integer from 0 to {MAX_EXPLAIN}; got {json.dumps(explain)}")
    return {"texts": texts, "k": k, "threshold": None if threshold is None else float(threshold),
            "proba": proba, "explain": explain, "allow_empty": allow_empty}


# --- scoring ----------------------------------------------------------------------------------

def _drop_proba(record: dict) -> dict:
    record.pop("proba", None)
    for entry in record.get("top", ()):
        entry.pop("proba", None)
    return record


def score(model: api.Model, jobs: list) -> list:
    """The JSON body (bytes) of each job's answer: its texts' records, as `nlclf predict
    --format jsonl` prints them. The texts of every job without an explanation are featurized
    and scored together."""
    bodies = [None] * len(jobs)
    plain = [i for i, j in enumerate(jobs) if not j.explain]
    if plain:
        probs = model.predict_proba([t for i in plain for t in jobs[i].texts])       # (N, C)
        start = 0
        for i in plain:
            j = jobs[i]
            many = model.multi_label or resolve_k(j.k, j.threshold) != 1 or j.threshold is not None
            rows = decided_labels(model.classifier, probs[start:start + len(j.texts)], j.k, j.threshold, j.allow_empty)
            start += len(j.texts)
            records = [prediction_record({"top": r}, many, False) for r in rows]
            bodies[i] = records if j.proba else [_drop_proba(r) for r in records]
    for i, j in enumerate(jobs):
        if j.explain:
            records = [prediction_record(r, False, True) for r in explain_texts(model.classifier, j.texts, j.explain)]
            bodies[i] = records if j.proba else [_drop_proba(r) for r in records]
    return [json.dumps({"results": b}, ensure_ascii=False).encode() for b in bodies]


class Batcher:
    """Collects jobs from the event loop and scores them in micro-batches on one thread."""

    def __init__(self, state):
        self.state = state
        self.queue: asyncio.Queue = asyncio.Queue()
        self.reading = 0                         # /predict requests whose body is still being read
        self.arrived = asyncio.Event()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="nlclf-score")
        self.task = None

    def start(self):
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self):
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.pool.shutdown(wait=True)

    def submit(self, job: Job) -> None:
        self.queue.put_nowait(job)
        self.arrived.set()

    async def run(self):
        loop = asyncio.get_running_loop()
        carried = None                                   # the job that did not fit: first of the next batch
        while True:
            batch = [carried or await self.queue.get()]
            carried = None
            n = len(batch[0].texts)
            deadline = loop.time() + MAX_WAIT
            while n < MAX_BATCH:
                if not self.queue.empty():
                    nxt = self.queue.get_nowait()
                    if n + len(nxt.texts) > MAX_BATCH:
                        carried = nxt
                        break
                    batch.append(nxt)
                    n += len(nxt.texts)
                    continue
                left = deadline - loop.time()
                if self.reading == 0 or left <= 0:
                    break
                self.arrived.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), left)
            model = self.state.model
            try:
                bodies = await loop.run_in_executor(self.pool, score, model, batch)
            except Exception as e:           # a bug: every waiting request gets it, the loop goes on
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            for job, body in zip(batch, bodies):
                if not job.future.done():
                    job.future.set_result(body)


# --- the application ---------------------------------------------------------------------------

class State:
    def __init__(self, model: api.Model, settings: Settings):
        self.model, self.settings = model, settings
        self.loaded_at = time.time()
        self.reload_lock = None
        self.batcher = None


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}, ensure_ascii=False).encode()


def _error(status: int, message: str):
    from starlette.responses import Response
    return Response(_error_body(status, message), status, media_type="application/json")


def _json(obj, status: int = 200):
    from starlette.responses import Response
    return Response(json.dumps(obj, ensure_ascii=False).encode(), status, media_type="application/json")


PREDICT_SCHEMA = {
    "type": "object", "required": ["texts"], "additionalProperties": False,
    "properties": {
        "texts": {"type": "array", "minItems": 1, "items": {"type": "string"},
                  "description": "The texts to classify (at most --max-texts)."},
        "k": {"type": ["integer", "null"], "description": "The k most probable labels of each text (-1: all). "
              "Default 1, or every label at or above threshold when one is given; a multi-label model's "
              "default: every label at or above its thresholds."},
        "threshold": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                      "description": "Only labels with at least this probability (possibly none; a multi-label "
                                     "model: the top one unless allow_empty)."},
        "allow_empty": {"type": "boolean", "default": False,
                        "description": "Multi-label models: a text no label reaches the threshold of gets none."},
        "proba": {"type": "boolean", "default": True, "description": "Include the probabilities."},
        "explain": {"type": "integer", "minimum": 0, "maximum": MAX_EXPLAIN, "default": 0,
                    "description": "Instead: the label and the n features that pushed it most toward "
                                   "and against it (gradient × input)."},
    },
    "example": {"texts": ["a gripping, funny film", "dull and far too long"], "k": 1, "proba": True},
}
RESULT_SCHEMA = {
    "type": "object",
    "properties": {"results": {"type": "array", "description": "One result per text, in order: "
                               "label, proba; top with k != 1, a threshold or a multi-label model; toward, against with explain.",
                               "items": {"type": "object"}}},
}
ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}}


def _responses(*codes) -> dict:
    what = {400: "Malformed JSON or text that is not UTF-8", 409: "The model folder holds no valid model now",
            413: "More than --max-texts texts, or a body over --max-bytes",
            422: "A field missing, empty or of the wrong type"}
    return {c: {"description": what[c], "content": {"application/json": {"schema": ERROR_SCHEMA}}} for c in codes}


def create_app(state: State):
    """The ASGI application serving ``state.model``."""
    from starlette.exceptions import HTTPException

    settings = state.settings

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state.reload_lock = asyncio.Lock()
        state.batcher = Batcher(state)
        state.batcher.start()
        yield
        await state.batcher.stop()

    app = FastAPI(title="nlclf", version=__version__, lifespan=lifespan,
                  description=f"Text classification with the nlclf model in {settings.model}. "
                              f"POST /predict with {{\"texts\": [...]}}.")

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def internal_error(request, exc):           # a bug: said in JSON, logged
        print_line(f"nlclf serve: internal error on {request.url.path}: {type(exc).__name__}: {exc}")
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.post("/predict", summary="Classify texts",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": PREDICT_SCHEMA}}}},
              responses={200: {"description": "One result per text", "content": {"application/json": {"schema": RESULT_SCHEMA}}},
                         **_responses(400, 413, 422)})
    async def predict(request: Request):
        """Documents the route; POST /predict is answered by ``answer_predict`` before FastAPI."""
        status, body, texts = await answer_predict(state, request.scope, request.receive)
        request.state.texts = texts
        from starlette.responses import Response
        return Response(body, status, media_type="application/json")

    @app.get("/health", summary="Is the server up?")
    async def health():
        return _json({"status": "ok", "checksum": state.model.checksum})

    @app.get("/labels", summary="The model's labels, in the order of its probabilities")
    async def labels():
        return _json({"labels": state.model.labels})

    @app.get("/metadata", summary="The model: labels, config, versions, checksum; the server's limits")
    async def metadata():
        meta = state.model.metadata()
        meta["server"] = {"max_texts": settings.max_texts, "max_bytes": settings.max_bytes,
                          "max_batch": MAX_BATCH, "max_wait_ms": MAX_WAIT * 1000, "workers": settings.workers,
                          "pid": os.getpid(), "loaded_at": state.loaded_at}
        return _json(meta)

    @app.post("/reload", summary="Load the model folder again (after it was replaced on disk)",
              responses=_responses(409))
    async def reload():
        previous = state.model.checksum
        try:
            await reload_model(state)
        except NlclfError as e:
            return _error(409, f"{e}; still serving the model loaded before (checksum {previous})")
        return _json({"reloaded": True, "checksum": state.model.checksum, "previous": previous,
                      "changed": state.model.checksum != previous})

    fast = FastPredict(app, state)
    return RequestLog(fast) if not settings.quiet else fast


class FastPredict:
    """POST /predict answered in plain ASGI, before FastAPI's routing and middleware (a third of
    a small request's cost); everything else, and the OpenAPI description of /predict, is FastAPI's."""

    def __init__(self, app, state: State):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        status, body, texts = await answer_predict(self.state, scope, receive)
        scope.setdefault("state", {})["texts"] = texts
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def answer_predict(state: State, scope, receive) -> tuple:
    """(status, JSON body, number of texts or "-") of a /predict request."""
    batcher = state.batcher
    batcher.reading += 1
    try:
        headers = {k: v for k, v in scope["headers"] if k in (b"content-length", b"expect")}
        body = await _read_body(receive, headers, state.settings.max_bytes)
        req = parse_predict(body, state.settings.max_texts)
    except BadRequest as e:
        return e.status, _error_body(e.status, str(e)), "-"
    finally:
        batcher.reading -= 1
    future = asyncio.get_running_loop().create_future()
    batcher.submit(Job(req["texts"], req["k"], req["threshold"], req["proba"], req["explain"], future,
                       req["allow_empty"]))
    return 200, await future, len(req["texts"])


async def _read_body(receive, headers: dict, max_bytes: int) -> bytes:
    """The body, or BadRequest(413) once it passes max_bytes (then read on and dropped, up to
    DISCARD_BYTES, so that the client gets the answer instead of a reset connection)."""
    declared = headers.get(b"content-length", b"").decode("latin-1")
    too_big = f"the body is larger than this server takes ({max_bytes:,} bytes, --max-bytes)"
    limit = max_bytes
    if declared.isdigit() and int(declared) > max_bytes:
        if headers.get(b"expect", b"").lower() == b"100-continue" or int(declared) > DISCARD_BYTES:
            raise BadRequest(413, too_big)           # nothing read: the client has not sent it (or must not)
        limit = -1
    parts, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest(400, "the client closed the connection before the body was complete")
        chunk, more = message.get("body", b""), message.get("more_body", False)
        size += len(chunk)
        if limit < 0 or size > max_bytes:
            limit = -1
            if size > DISCARD_BYTES:
                break
            continue
        parts.append(chunk)
    if limit < 0:
        raise BadRequest(413, too_big)
    return b"".join(parts)


async def reload_model(state: State) -> None:
    """Load the model folder again, on a thread, and serve it from the next batch on."""
    async with state.reload_lock:
        model = await asyncio.get_running_loop().run_in_executor(None, api.load, state.settings.model)
        state.model, state.loaded_at = model, time.time()


def print_line(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class RequestLog:
    """One line on stderr per request: client, method, path, status, texts, milliseconds."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [0]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        state = scope.setdefault("state", {})
        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("client") or ("-", 0)
            texts = state.get("texts", "-")
            print_line(f"{client[0]} {scope['method']} {scope['path']} {status[0]} texts={texts} "
                       f"{(time.perf_counter() - t0) * 1000:.1f} ms")


# --- running -----------------------------------------------------------------------------------

def _uvicorn_server(state: State):
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server with our signals: SIGTERM and SIGINT drain and stop (the signal is
        kept in ``stopped_by``, not raised again), a second SIGINT stops at once, SIGHUP reloads."""

        stopped_by = None

        @contextlib.contextmanager
        def capture_signals(self):
            loop = asyncio.get_event_loop()
            def on_signal(signum, frame):
                if signum == signal.SIGHUP:
                    loop.call_soon_threadsafe(lambda: loop.create_task(_reload_quietly(state)))
                    return
                if self.should_exit and signum == signal.SIGINT:
                    self.force_exit = True
                self.should_exit = True
                self.stopped_by = self.stopped_by or signum
            previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
            try:
                yield
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)

    fast = {}
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401
        fast["loop"] = "uvloop"
    with contextlib.suppress(ImportError):
        import httptools  # noqa: F401
        fast["http"] = "httptools"
    config = uvicorn.Config(create_app(state), log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=state.settings.drain_seconds, backlog=2048, **fast)
    return Server(config)


async def _reload_quietly(state: State) -> None:
    try:
        await reload_model(state)
        if not state.settings.quiet:
            print_line(f"nlclf serve: reloaded {state.settings.model} (checksum {state.model.checksum[:16]})")
    except NlclfError as e:
        print_line(f"nlclf serve: reload failed, still serving the previous model: {e}")


def _run_worker(model: api.Model, settings: Settings, sock: socket.socket):
    """Serve on ``sock`` until a signal stops it; returns that signal (or None)."""
    server = _uvicorn_server(State(model, settings))
    sys.setswitchinterval(SWITCH_INTERVAL)
    with blas_threads(1):                # small batches: BLAS threads would spin beside the event loop
        server.run(sockets=[sock])
    return server.stopped_by


def _listen(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise NlclfError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise NlclfError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    import ipaddress
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(settings: Settings) -> int:
    """Load the model, listen, serve until SIGTERM (returns 0) or SIGINT (130)."""
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        uvicorn = None
    if FastAPI is None or uvicorn is None:
        raise NlclfError("nlclf serve needs the serve extra: pip install 'nlclf[serve]'")
    model = api.load(settings.model)
    sock = _listen(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    where = ("loopback only: other machines cannot connect; --host 0.0.0.0 listens on every interface"
             if _is_loopback(host) else "every machine that can reach this address can connect")
    url_host = f"[{host}]" if ":" in host else host
    print_line(f"nlclf serve: {settings.model} ({len(model.labels)} labels) on http://{url_host}:{port} "
               f"({where}); {settings.workers} worker{'s' if settings.workers > 1 else ''}; docs at /docs")
    if settings.workers <= 1:
        stopped_by = _run_worker(model, settings, sock)
    else:
        stopped_by = _supervise(model, settings, sock)
    sock.close()
    if not settings.quiet:
        name = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}.get(stopped_by, "shutdown")
        print_line(f"nlclf serve: {name}: the requests in flight were answered; stopped")
    return 130 if stopped_by == signal.SIGINT else 0


def _supervise(model: api.Model, settings: Settings, sock: socket.socket):
    """Fork ``settings.workers`` workers on the shared socket, forward SIGTERM, SIGINT and SIGHUP
    to them, start a new one when one dies; returns the stopping signal once all have exited."""
    workers: dict = {}
    stopped = []

    def spawn():
        pid = os.fork()
        if pid == 0:                                   # the worker
            code = 1
            try:
                os.setpgid(0, 0)                       # a terminal's Ctrl-C reaches the main process only
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(s, signal.SIG_DFL)
                got = _run_worker(model, settings, sock)
                code = 130 if got == signal.SIGINT else 0
            finally:
                os._exit(code)
        workers[pid] = time.monotonic()

    def forward(signum, frame):
        if signum != signal.SIGHUP and not stopped:
            stopped.append(signum)
        for pid in list(workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        for _ in range(settings.workers):
            spawn()
        quick_deaths = 0
        while workers:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:            # pragma: no cover - retried by Python since 3.5
                continue
            started = workers.pop(pid, None)
            if started is None or stopped:
                continue
            print_line(f"nlclf serve: worker {pid} ended (status {status}); starting another")
            quick_deaths = quick_deaths + 1 if time.monotonic() - started < 5 else 0
            if quick_deaths >= 3:
                forward(signal.SIGTERM, None)
                raise NlclfError("workers keep dying at start; stopped")
            spawn()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return stopped[0] if stopped else None
