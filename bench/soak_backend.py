#!/usr/bin/env python3
"""Slow stand-in backends for bench/soak.sh's SIGTERM phase.

    soak_backend.py MAX_DELAY_MS PORT [PORT ...]

Listens on 127.0.0.1 at each PORT (HTTP/1.1, keep-alive, a thread per connection) and answers
every GET with 200 "slow-PORT\n" after a random delay of 0..MAX_DELAY_MS, so that many requests
are in flight at any moment. Runs until killed.
"""

import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    max_delay = 0.0

    def do_GET(self):  # noqa: N802 (http.server's naming)
        time.sleep(random.uniform(0, self.max_delay))
        body = f"slow-{self.server.server_port}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    Handler.max_delay = int(sys.argv[1]) / 1000
    servers = []
    for port in sys.argv[2:]:
        server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
