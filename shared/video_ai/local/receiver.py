"""A tiny callback receiver for trying `video-ai serve`: verifies Standard Webhooks signatures and prints events.

    python -m video_ai.local.receiver --port 9000 --secret whsec_...

Each verified delivery prints one JSON line on stdout (`{"webhook_id", "type", "job_id", "status"}`); a delivery that
fails verification gets 400 and a line on stderr. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

MAX_BODY = 1024 * 1024


def make_server(
    secret: str, port: int = 0, on_event: Callable[[dict[str, Any], dict[str, str], bytes], None] | None = None
) -> ThreadingHTTPServer:
    """A loopback HTTP server that verifies each POST with `standardwebhooks` and hands verified events on (parsed,
    with their headers and the body as received)."""
    verifier = Webhook(secret)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self._answer(413, "body too large")
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                payload = verifier.verify(body, headers)
            except WebhookVerificationError as err:
                sys.stderr.write(f"receiver: rejected delivery: {err}\n")
                self._answer(400, "invalid signature")
                return
            with lock:
                if on_event is not None:
                    on_event(payload, headers, body)
                else:
                    data = payload.get("data") or {}
                    line = {"webhook_id": headers.get("webhook-id"), "type": payload.get("type"),
                            "job_id": payload.get("job_id"), "status": data.get("status")}
                    sys.stdout.write(json.dumps(line) + "\n")
                    sys.stdout.flush()
            self._answer(204, "")

        def _answer(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None  # one line per event is enough

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m video_ai.local.receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", required=True, help="the whsec_... secret `video-ai serve` printed")
    args = parser.parse_args(argv)
    try:
        server = make_server(args.secret, args.port)
    except OSError as err:
        sys.stderr.write(f"receiver: cannot listen on 127.0.0.1:{args.port}: {err.strerror}\n")
        return 1
    except Exception as err:
        sys.stderr.write(f"receiver: {err}\n")
        return 2
    sys.stderr.write(f"receiver: listening on http://127.0.0.1:{server.server_address[1]}/\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
