"""A small HTTP server: the testbed's sample workload.

GET / answers JSON naming the pod and cluster that served it, so a test can tell which cluster
answered; /healthz is for probes. Standard library only: the image has Python and nothing else.
"""

import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; on a kept-alive connection (Traefik's to its
    # backends) Nagle holds the body until the headers are ACKed, and the peer delays that ACK
    # by 40 ms: TCP_NODELAY sends both at once (docs/latency.md).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = json.dumps(
            {
                "pod": socket.gethostname(),
                "cluster": os.environ.get("KUBEHOP_CLUSTER", ""),
                "path": self.path,
            }
        ).encode()
        if self.path == "/healthz":
            body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    ThreadingHTTPServer(("", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
