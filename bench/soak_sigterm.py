#!/usr/bin/env python3
"""SIGTERM under load, for bench/soak.sh: which requests that started before the signal failed?

    soak_sigterm.py URL PROXY_PID [--clients 32] [--think-ms 0] [--before 3] [--after 3]
                    [--timeout 15]

CLIENTS threads send GET URL with a random `x-user-id` over keep-alive connections (a failed
connection is replaced), pausing 0..THINK_MS between requests so that some connections sit idle
when the signal comes, and record each request's start time, end time and outcome. After
BEFORE seconds this process sends SIGTERM to PROXY_PID itself (one clock for the signal and the
requests), keeps the load on for AFTER more seconds, and watches /proc for the proxy's exit.
A request "started" when the client began to send it. Prints one JSON object.
"""

import argparse
import http.client
import json
import os
import random
import signal
import threading
import time
import urllib.parse


def proxy_gone(pid):
    """True once the process has exited (gone, or a zombie its parent has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:  # gone between open and read (ESRCH) or before it (ENOENT)
        return True


def client(url, stop, timeout, think, results):
    u = urllib.parse.urlsplit(url)
    conn = None
    while not stop.is_set():
        if conn is None:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        key = f"user-{random.randrange(1_000_000)}"
        start = time.monotonic()
        try:
            conn.request("GET", u.path or "/", headers={"x-user-id": key})
            res = conn.getresponse()
            res.read()
            outcome = str(res.status)
            if res.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            outcome = type(e).__name__
            conn.close()
            conn = None
            # After the signal the listener is gone: do not spin on refused connects.
            time.sleep(0.01)
        results.append((start, time.monotonic(), outcome))
        if think:
            time.sleep(random.uniform(0, think))
    if conn is not None:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("pid", type=int)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--think-ms", type=float, default=0.0)
    p.add_argument("--before", type=float, default=3.0)
    p.add_argument("--after", type=float, default=3.0)
    p.add_argument("--timeout", type=float, default=15.0)
    a = p.parse_args()

    stop = threading.Event()
    results = []  # list.append is atomic under the GIL
    threads = [
        threading.Thread(target=client, args=(a.url, stop, a.timeout, a.think_ms / 1000, results), daemon=True)
        for _ in range(a.clients)
    ]
    for t in threads:
        t.start()
    time.sleep(a.before)
    t_sig = time.monotonic()
    os.kill(a.pid, signal.SIGTERM)
    exited = None
    deadline = t_sig + max(a.after, a.timeout + 5)
    while time.monotonic() < deadline:
        if exited is None and proxy_gone(a.pid):
            exited = time.monotonic() - t_sig
        if time.monotonic() - t_sig >= a.after and exited is not None:
            break
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(a.timeout + 5)

    def summary(rows):
        failed = {}
        for _, _, outcome in rows:
            if not outcome.startswith("2"):
                failed[outcome] = failed.get(outcome, 0) + 1
        return {"started": len(rows), "ok": len(rows) - sum(failed.values()), "failed": failed}

    before = [r for r in results if r[0] < t_sig]
    after = [r for r in results if r[0] >= t_sig]
    in_flight = [r for r in before if r[1] > t_sig]
    print(json.dumps({
        "clients": a.clients,
        "before_signal": summary(before),
        "in_flight_at_signal": summary(in_flight),
        "after_signal": summary(after),
        "proxy_exit_s": None if exited is None else round(exited, 3),
    }))


if __name__ == "__main__":
    main()
