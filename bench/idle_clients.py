"""Opens N keep-alive connections to 127.0.0.1:PORT, makes one request on each (a random
x-user-id), prints "ready" and holds them until stdin closes; "error ..." if one fails."""
import random
import socket
import sys

port, n = int(sys.argv[1]), int(sys.argv[2])
conns = []
try:
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = random.randrange(1_000_000)
        s.sendall(b"GET / HTTP/1.1\r\nhost: bench\r\nx-user-id: user-%d\r\n\r\n" % key)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                raise OSError("closed before a response")
            got += chunk
        conns.append(s)
except OSError as e:
    print(f"error after {len(conns)} connections: {e}", flush=True)
    sys.exit(1)
print("ready", flush=True)
sys.stdin.read()
