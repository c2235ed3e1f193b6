"""`make bench-serve`: load on `nlclf serve` over loopback, written into docs/performance.md.

Trains the default sst2 model (data paths only) into bench/out/serve/sst2 unless it is there,
starts `nlclf serve MODEL --port 0 --quiet`, and drives it with a bounded load generator: an
asyncio client (uvloop when installed) holding C keep-alive connections, each sending its
next request when the previous answer is read, until a fixed number of requests is done.
Texts are sst2's test sentences, in turn. Cells: concurrency 1, 16 and 64, requests of 1 and
of 32 texts. First 100,000 single-text requests at concurrency 16 (the server's RSS read from
/proc before, after the first 1,000 and after all of them), then the cells, each after a
warm-up. An answer other than 200 with one result per text, or a failed connection, is an error.

    python bench/serve_load.py --data-root ../shared/data [--requests 10000] [--rss-requests 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
NLCLF = [sys.executable, "-m", "nlclf"]
BEGIN, END = "<!-- bench-serve:begin -->", "<!-- bench-serve:end -->"


def log(msg):
    print(f"[bench-serve] {msg}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def ensure_model(model: Path, data_root: Path) -> None:
    if (model / "model.json").is_file():
        log(f"reusing {model}")
        return
    d = data_root / "sst2"
    log(f"training the default sst2 model into {model}")
    subprocess.run(NLCLF + ["train", "--train", d / "train.tsv", "--dev", d / "dev.tsv", "--test", d / "test.tsv",
                            "--out", model, "--overwrite", "--quiet"], check=True, cwd=REPO)


def start_server(model: Path):
    proc = subprocess.Popen(NLCLF + ["serve", str(model), "--port", "0", "--quiet"], cwd=REPO,
                            stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()
    if "http://127.0.0.1:" not in first:
        proc.kill()
        raise RuntimeError(f"the server did not start: {first}{proc.stderr.read()}")
    return proc, int(first.split("127.0.0.1:")[1].split()[0]), first.strip()


def request_bytes(texts: list, port: int) -> bytes:
    body = json.dumps({"texts": texts}).encode()
    return (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _client(port: int, payloads: list, counter: list, total: int, n_texts: int, lat: list, errors: list):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        errors.append(f"connect: {e}")
        return
    try:
        while counter[0] < total:
            i = counter[0]
            counter[0] += 1
            t0 = time.perf_counter()
            writer.write(payloads[i % len(payloads)])
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if head[9:12] != b"200" or body.count(b'"label"') != n_texts:
                errors.append(f"{head[9:12].decode()} {body[:200]!r}")
    except (OSError, asyncio.IncompleteReadError) as e:
        errors.append(f"connection: {type(e).__name__}: {e}")
    finally:
        writer.close()


async def _load(port, payloads, total, concurrency, n_texts):
    counter, lat, errors = [0], [], []
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(port, payloads, counter, total, n_texts, lat, errors) for _ in range(concurrency)))
    return time.perf_counter() - t0, lat, errors


def load(port: int, texts: list, total: int, concurrency: int, n_texts: int) -> dict:
    payloads = [request_bytes([texts[(i * n_texts + j) % len(texts)] for j in range(n_texts)], port)
                for i in range(min(2000, total))]
    seconds, lat, errors = asyncio.run(_load(port, payloads, total, concurrency, n_texts))
    lat_ms = np.array(lat) * 1000
    done = len(lat)
    return {"concurrency": concurrency, "texts_per_request": n_texts, "requests": done, "seconds": seconds,
            "requests_per_s": done / seconds, "texts_per_s": done * n_texts / seconds,
            "p50_ms": float(np.percentile(lat_ms, 50)) if done else None,
            "p99_ms": float(np.percentile(lat_ms, 99)) if done else None,
            "errors": len(errors) + (total - done - len(errors) if done + len(errors) < total else 0),
            "error_samples": errors[:3]}


def document(args, rss: dict, cells: list, started: str, elapsed: float, line: str) -> str:
    import nlclf
    head = rss["cell"]
    rows = ["| concurrency | texts a request | requests | requests/s | texts/s | p50 ms | p99 ms | errors |",
            "|---|---|---|---|---|---|---|---|"]
    for c in [head] + cells:
        rows.append(f"| {c['concurrency']} | {c['texts_per_request']} | {c['requests']:,} | {c['requests_per_s']:,.0f} | "
                    f"{c['texts_per_s']:,.0f} | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} | {c['errors']} |")
    growth = (rss["after_all"] - rss["after_1000"]) / rss["after_1000"] * 100
    target16 = [c for c in cells + [head] if c["concurrency"] == 16 and c["texts_per_request"] == 1]
    t = target16[0]
    errors = sum(c["errors"] for c in cells + [head])
    met = lambda ok: "met" if ok else "**missed**"
    return "\n".join([
        BEGIN,
        "## nlclf serve under load (`make bench-serve`)",
        "",
        f"Measured {started} UTC on this machine (`nproc` {os.cpu_count()}, Python {platform.python_version()}, "
        f"nlclf {nlclf.__version__}); {elapsed / 60:.1f} min in all. Command:",
        "",
        "```sh",
        f".venv/bin/python bench/serve_load.py --data-root {args.data_root} --requests {args.requests} "
        f"--rss-requests {args.rss_requests}",
        "```",
        "",
        f"Model: the default config on sst2 (data paths only), `{args.model}`. Server: `nlclf serve MODEL --port 0 "
        f"--quiet` (one worker, micro-batches of at most 256 texts, a wait of at most 2 ms for requests still "
        f"being read). Client: `bench/serve_load.py`, an asyncio load generator on the same 2 cores, one "
        f"keep-alive connection per concurrent client, each sending its next request when its answer is read, "
        f"sst2 test sentences in turn; a fixed number of requests, then it stops. Latency is from writing a "
        f"request to reading its whole answer. The first row is the {args.rss_requests:,}-request run that "
        f"measures memory; the others ran after it, {args.requests:,} requests each after 500 of warm-up.",
        "",
        *rows,
        "",
        f"Server RSS: {rss['before']:.1f} MB before the first request, {rss['after_1000']:.1f} MB after the first "
        f"1,000, {rss['after_all']:.1f} MB after {rss['requests']:,} ({growth:+.1f} % from 1,000).",
        "",
        "| target (2 cores, default sst2 model) | measured | |",
        "|---|---|---|",
        f"| concurrency 16, single-text requests: at least 1,000 requests/s | {t['requests_per_s']:,.0f} requests/s "
        f"| {met(t['requests_per_s'] >= 1000)} |",
        f"| the same, p99 under 100 ms | {t['p99_ms']:.2f} ms | {met(t['p99_ms'] < 100)} |",
        f"| zero errors | {errors} | {met(errors == 0)} |",
        f"| RSS after {rss['requests']:,} requests within 10 % of after 1,000 | {growth:+.1f} % | {met(abs(growth) <= 10)} |",
        END,
    ])


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--model", default="bench/out/serve/sst2")
    ap.add_argument("--requests", type=int, default=10000, help="requests of each cell")
    ap.add_argument("--rss-requests", type=int, default=100000)
    ap.add_argument("--out", default="docs/performance.md")
    ap.add_argument("--json", default="bench/out/serve/bench_serve.json")
    args = ap.parse_args(argv)
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    t_start = time.perf_counter()
    model = REPO / args.model
    ensure_model(model, Path(args.data_root).resolve())
    texts = [line.split("\t", 1)[1].rstrip("\n") for line in
             (Path(args.data_root) / "sst2" / "test.tsv").read_text(encoding="utf-8").splitlines() if "\t" in line]
    proc, port, line = start_server(model)
    try:
        rss = {"before": rss_mb(proc.pid), "requests": args.rss_requests}
        first = load(port, texts, 1000, 16, 1)
        rss["after_1000"] = rss_mb(proc.pid)
        rest = load(port, texts, args.rss_requests - 1000, 16, 1)
        rss["after_all"] = rss_mb(proc.pid)
        merged = dict(rest, requests=first["requests"] + rest["requests"], errors=first["errors"] + rest["errors"])
        rss["cell"] = merged
        log(f"c16 x1 {args.rss_requests:,} requests: {merged['requests_per_s']:.0f} req/s, p99 {merged['p99_ms']:.2f} ms; "
            f"RSS {rss['before']:.1f} / {rss['after_1000']:.1f} / {rss['after_all']:.1f} MB")
        cells = []
        for n_texts in (1, 32):
            for conc in (1, 16, 64):
                load(port, texts, 500, conc, n_texts)                    # warm-up
                cell = load(port, texts, args.requests, conc, n_texts)
                log(f"c{conc} x{n_texts}: {cell['requests_per_s']:.0f} req/s, {cell['texts_per_s']:.0f} texts/s, "
                    f"p50 {cell['p50_ms']:.2f} ms, p99 {cell['p99_ms']:.2f} ms, errors {cell['errors']}")
                cells.append(cell)
    finally:
        proc.terminate()
        code = proc.wait(60)
    log(f"server exited {code} on SIGTERM")
    elapsed = time.perf_counter() - t_start
    section = document(args, rss, cells, started, elapsed, line)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"rss": rss, "cells": cells, "server_exit": code}, indent=2))
    write_section(REPO / args.out, section)
    print(section)


if __name__ == "__main__":
    main()
