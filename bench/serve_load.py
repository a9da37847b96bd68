#!/usr/bin/env python3
"""Load generator for `hlwq serve` without Node (the GPU machine has Python but maybe no Node): the same protocol
and output as bench/serve_load.mjs — C concurrent clients, each sending R streaming chat requests one after another
over plain HTTP (the OpenAI wire format: SSE chunks, stream_options.include_usage) — and one JSON line: aggregate
generation tok/s (completion tokens of all requests / wall time), p50/p99 of time-to-first-token and of inter-token
latency (gaps between content chunks). Standard library only.
Usage: python3 bench/serve_load.py BASE_URL CONCURRENCY [REQUESTS_PER_CLIENT=4] [MAX_TOKENS=64]   (KEY=api key)
"""
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse


def request(base, path, body=None):
    u = urllib.parse.urlparse(base + path)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    headers = {"Authorization": "Bearer " + os.environ.get("KEY", "none")}
    if body is None:
        conn.request("GET", u.path, headers=headers)
    else:
        headers["Content-Type"] = "application/json"
        conn.request("POST", u.path, body=json.dumps(body), headers=headers)
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"{path}: HTTP {r.status}: {r.read()[:300]!r}")
    return conn, r


def main():
    base, conc = sys.argv[1], int(sys.argv[2])
    per_client = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    max_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 64
    conn, r = request(base, "/models")
    model = json.loads(r.read())["data"][0]["id"]
    conn.close()
    lock = threading.Lock()
    ttft, itl, tokens, errors = [], [], [0], []

    def one(i, j):
        body = {"model": model, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": max_tokens,
                "temperature": 0, "messages": [{"role": "user", "content":
                f"Client {i}, request {j}: write about the weather in city number {i * 31 + j}."}]}
        t0 = time.perf_counter()
        conn, r = request(base, "/chat/completions", body)
        last = None
        for raw in r:  # SSE: "data: {...}" lines, blank separators, "data: [DONE]" last
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            c = json.loads(line[6:])
            with lock:
                if c.get("usage"):
                    tokens[0] += c["usage"]["completion_tokens"]
            if not c.get("choices") or not c["choices"][0].get("delta", {}).get("content"):
                continue
            now = time.perf_counter()
            with lock:
                (ttft if last is None else itl).append((now - (t0 if last is None else last)) * 1e3)
            last = now
        conn.close()

    def client(i):
        try:
            for j in range(per_client):
                one(i, j)
        except Exception as e:  # reported, and the run fails
            errors.append(repr(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        sys.exit("serve_load.py: " + errors[0])

    def pct(a, p):
        s = sorted(a)
        return s[min(len(s) - 1, int(p * len(s)))] if s else float("nan")

    print(json.dumps({"concurrency": conc, "requests": conc * per_client, "tokens": tokens[0], "wall_s": round(wall, 2),
                      "gen_tok_s": round(tokens[0] / wall, 1), "ttft_p50_ms": round(pct(ttft, 0.5), 1),
                      "ttft_p99_ms": round(pct(ttft, 0.99), 1), "itl_p50_ms": round(pct(itl, 0.5), 1),
                      "itl_p99_ms": round(pct(itl, 0.99), 1), "client": "python http.client"}))


if __name__ == "__main__":
    main()
