"""A small OpenAI-compatible chat-completions server on loopback that replays fixed answers, for testing
clients (the synthesis Analyzer) over real HTTP without a model.

    with ReplayServer(["answer 1", ReplayServer.FAIL, ...]) as server:
        server.url        # "http://127.0.0.1:<port>/v1"
        server.requests   # [(path, Authorization header, request JSON), ...]

Each POST takes the next answer; `ReplayServer.FAIL` answers that request with HTTP 500, and an
exhausted list answers 503.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List


class ReplayServer:
    FAIL = object()

    def __init__(self, answers: List):
        self.answers = list(answers)
        self.requests = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner._lock:
                    owner.requests.append((self.path, self.headers.get("Authorization"), body))
                    answer = owner.answers.pop(0) if owner.answers else None
                if answer is None or answer is ReplayServer.FAIL:
                    self.send_response(503 if answer is None else 500)
                    self.end_headers()
                    return
                message = {"role": "assistant", "content": answer}
                payload = {
                    "id": "replay",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
