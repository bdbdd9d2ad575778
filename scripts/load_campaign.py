"""Load campaign client (scripts/load-campaign runs it): hostile and heavy traffic against
a running Veil runtime and key broker on loopback, over real TLS. Prints one JSON object
per check and exits non-zero if any check fails.

Checks, per server:
  connections  1,000 concurrent TLS connections, one request each: every one gets an
               HTTP answer (success, or a refusal with a JSON error that says why);
               p50/p99 latency
  slowloris    200 clients sending their headers a byte a second, and 50 sending a
               declared body a byte a second: the server drops them on its own deadline,
               and meanwhile serves a normal client promptly
  oversized    a 2 MiB body: 413 with a message, nothing else happens
  malformed    broken JSON: 400 with a message
  sse-drop     (runtime) 40 streaming chats dropped after their first event: the runtime
               stays up and answers a normal chat afterwards
"""

import argparse
import asyncio
import json
import os
import ssl
import statistics
import sys
import time


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


class Target:
    def __init__(self, name, host, port, sni, cafile, headers):
        self.name, self.host, self.port, self.sni = name, host, port, sni
        self.ctx = ssl.create_default_context(cafile=cafile)
        self.headers = headers

    async def connect(self, timeout=30):
        return await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.ctx, server_hostname=self.sni), timeout
        )

    def head(self, method, path, length=None, extra=()):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.sni}:{self.port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        lines += list(extra)
        if length is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {length}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def request(self, method, path, body=None, timeout=60):
        """(status, body bytes, seconds); status 0 and the error text on a transport failure."""
        t0 = time.perf_counter()
        try:
            r, w = await self.connect(timeout)
            w.write(self.head(method, path, None if body is None else len(body)) + (body or b""))
            await w.drain()
            data = await asyncio.wait_for(r.read(), timeout)
            w.close()
        except Exception as e:  # noqa: BLE001 - every failure is a finding, reported as such
            return 0, f"{type(e).__name__}: {e}".encode(), time.perf_counter() - t0
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
        return status, data.partition(b"\r\n\r\n")[2], time.perf_counter() - t0


def clear_error(status, body):
    """A refusal says why: a JSON body naming the problem (the runtime's OpenAI error or
    the broker's problem document), or a short text from the HTTP layer (413)."""
    if 200 <= status < 300:
        return True
    try:
        v = json.loads(body)
        msg = (v.get("error") or {}).get("message") if isinstance(v.get("error"), dict) else v.get("detail")
        return bool(msg)
    except (ValueError, AttributeError):
        return status == 413 and b"length limit" in body


async def connections(t, method, path, body, n):
    res = await asyncio.gather(*(t.request(method, path, body) for _ in range(n)))
    statuses = {}
    for s, _, _ in res:
        statuses[s] = statuses.get(s, 0) + 1
    lat = [d for s, _, d in res if s]
    unclear = [(s, b[:120].decode(errors="replace")) for s, b, _ in res if not clear_error(s, b)]
    return {
        "check": "connections",
        "server": t.name,
        "concurrent": n,
        "statuses": statuses,
        "p50_ms": round(1e3 * pct(lat, 50), 1) if lat else None,
        "p99_ms": round(1e3 * pct(lat, 99), 1) if lat else None,
        "max_ms": round(1e3 * max(lat), 1) if lat else None,
        "ok": not unclear and 0 not in statuses,
        "unclear": unclear[:3],
    }


async def slow_client(t, body_len, deadline):
    """Trickles a request a byte a second; returns seconds until the server hung up, or
    None if it still held the connection at `deadline`."""
    t0 = time.perf_counter()
    try:
        r, w = await t.connect()
    except Exception as e:  # noqa: BLE001 - a refused connection is not a dropped slow client
        return ("connect failed", f"{type(e).__name__}")
    data = t.head("POST", "/v1/chat/completions" if t.name == "runtime" else "/kbs/v0/auth", body_len)
    if body_len is not None:  # headers at once, then the body slowly
        w.write(data)
        data = b"{" * body_len
    try:
        for b in data:
            if time.perf_counter() - t0 > deadline:
                return None
            w.write(bytes([b]))
            await w.drain()
            try:
                got = await asyncio.wait_for(r.read(1 << 16), 1.0)
                # An answer or EOF: the server ended it.
                status = got.split(b" ", 2)[1].decode(errors="replace") if got.startswith(b"HTTP/1.1 ") else "closed"
                return (time.perf_counter() - t0, status)
            except asyncio.TimeoutError:
                pass
        return None
    except (ConnectionError, OSError, ssl.SSLError):
        return (time.perf_counter() - t0, "reset")
    finally:
        w.close()


async def slowloris(t, method, path, body, deadline):
    """Slow headers must be dropped near hyper's 10 s header deadline, slow bodies with a
    408 near the 30 s body deadline; a normal client meanwhile gets answers within 1 s."""
    slow_heads = [asyncio.create_task(slow_client(t, None, deadline)) for _ in range(200)]
    slow_bodies = [asyncio.create_task(slow_client(t, 64 * 1024, deadline)) for _ in range(50)]
    await asyncio.sleep(3)
    normal = [await t.request(method, path, body) for _ in range(5)]
    heads = await asyncio.gather(*slow_heads)
    bodies = await asyncio.gather(*slow_bodies)

    def summary(results, lo, hi, want_status):
        held = sum(1 for x in results if x is None)
        bad = [x for x in results if x is not None and (isinstance(x[0], str) or not lo <= x[0] <= hi
                                                         or (want_status and x[1] != want_status))]
        times = [x[0] for x in results if x is not None and not isinstance(x[0], str)]
        return held, bad, round(statistics.median(times or [0]), 1)

    held_h, bad_h, t_h = summary(heads, 8.0, 15.0, None)
    held_b, bad_b, t_b = summary(bodies, 28.0, 36.0, "408")
    ok_normal = all(s and clear_error(s, b) and s < 500 and d < 1.0 for s, b, d in normal)
    return {
        "check": "slowloris",
        "server": t.name,
        "slow_headers": 200,
        "slow_headers_held_past_deadline": held_h,
        "slow_headers_dropped_after_s": t_h,
        "slow_headers_not_on_deadline": bad_h[:3],
        "slow_bodies": 50,
        "slow_bodies_held_past_deadline": held_b,
        "slow_bodies_dropped_after_s": t_b,
        "slow_bodies_not_408_on_deadline": bad_b[:3],
        "normal_client_ms": [round(1e3 * d, 1) for _, _, d in normal],
        "normal_statuses": [s for s, _, _ in normal],
        "ok": held_h == 0 and held_b == 0 and not bad_h and not bad_b and ok_normal,
    }


async def oversized(t, path):
    """Declares a 2 MiB body and waits for the verdict before sending it (the server
    must refuse it from the declared length, without reading it)."""
    try:
        r, w = await t.connect()
        w.write(t.head("POST", path, 2 << 20))
        await w.drain()
        data = await asyncio.wait_for(r.read(), 30)
        w.close()
    except Exception as e:  # noqa: BLE001
        data = f"{type(e).__name__}: {e}".encode()
    s = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    b = data.partition(b"\r\n\r\n")[2]
    return {"check": "oversized", "server": t.name, "status": s, "body": b[:100].decode(errors="replace"),
            "ok": s == 413 and clear_error(s, b)}


async def malformed(t, path):
    out, ok = [], True
    for body in (b"{not json", b'{"model": 5', b"[]", b"\xff\xfe"):
        s, b, _ = await t.request("POST", path, body)
        out.append((s, b[:100].decode(errors="replace")))
        ok = ok and s == 400 and clear_error(s, b)
    return {"check": "malformed", "server": t.name, "answers": out, "ok": ok}


async def sse_drop(t, model):
    body = json.dumps({"model": model, "stream": True, "max_tokens": 48,
                       "messages": [{"role": "user", "content": "Tell me a long story."}]}).encode()

    async def drop():
        try:
            r, w = await t.connect()
            w.write(t.head("POST", "/v1/chat/completions", len(body)) + body)
            await w.drain()
            got = b""
            while b"data:" not in got:
                chunk = await asyncio.wait_for(r.read(4096), 60)
                if not chunk:
                    break
                got += chunk
            w.transport.abort()  # gone midway, without a goodbye
            return got.split(b" ", 2)[1] if got.startswith(b"HTTP/1.1 ") else b"?"
        except Exception as e:  # noqa: BLE001
            return f"{type(e).__name__}".encode()

    firsts = await asyncio.gather(*(drop() for _ in range(40)))
    await asyncio.sleep(2)
    ask = json.dumps({"model": model, "max_tokens": 4,
                      "messages": [{"role": "user", "content": "Say hello."}]}).encode()
    after = []
    for _ in range(30):  # the dropped streams' queue drains, then a chat is served
        s, b, _ = await t.request("POST", "/v1/chat/completions", ask)
        after.append(s)
        if s == 200:
            break
        await asyncio.sleep(1)
    codes = {}
    for f in firsts:
        k = f.decode(errors="replace")
        codes[k] = codes.get(k, 0) + 1
    return {"check": "sse-drop", "server": t.name, "streams_dropped": 40, "first_answers": codes,
            "chat_after": after, "ok": after[-1:] == [200] and set(codes) <= {"200", "503", "429"}}


def rss(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime-port", type=int, required=True)
    ap.add_argument("--runtime-cert", required=True)
    ap.add_argument("--runtime-pid", type=int, required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--kbs-port", type=int, required=True)
    ap.add_argument("--kbs-ca", required=True)
    ap.add_argument("--kbs-pid", type=int, required=True)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--slow-deadline", type=float, default=45.0)
    a = ap.parse_args()
    rt = Target("runtime", "127.0.0.1", a.runtime_port, "localhost", a.runtime_cert,
                {"Authorization": f"Bearer {a.api_key}"})
    kbs = Target("broker", "127.0.0.1", a.kbs_port, "127.0.0.1", a.kbs_ca, {})
    auth = json.dumps({"version": "0.4.0", "tee": "snp", "extra-params": {}}).encode()
    checks = [
        await connections(rt, "GET", "/v1/models", None, a.connections),
        await connections(kbs, "POST", "/kbs/v0/auth", auth, a.connections),
        await slowloris(rt, "GET", "/v1/models", None, a.slow_deadline),
        await slowloris(kbs, "POST", "/kbs/v0/auth", auth, a.slow_deadline),
        await oversized(rt, "/v1/chat/completions"),
        await oversized(kbs, "/kbs/v0/auth"),
        await malformed(rt, "/v1/chat/completions"),
        await malformed(kbs, "/kbs/v0/auth"),
        await sse_drop(rt, "smollm2"),
    ]
    for c in checks:
        print(json.dumps(c))
    alive = {"runtime": os.path.exists(f"/proc/{a.runtime_pid}"), "broker": os.path.exists(f"/proc/{a.kbs_pid}")}
    print(json.dumps({"check": "survived", "alive": alive, "peak_rss_mib": {
        "runtime": rss(a.runtime_pid), "broker": rss(a.kbs_pid)}, "ok": all(alive.values())}))
    return 0 if all(c["ok"] for c in checks) and all(alive.values()) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
