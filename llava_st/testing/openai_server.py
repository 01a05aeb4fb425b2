"""An OpenAI-compatible chat-completions server on loopback that answers by the request's content, with
injected latency and errors: for testing and benchmarking a served Analyzer over real HTTP, in any
order and with many requests in flight.

    with LoopbackChatServer(answer, latency=0.2, faults={"Caption: \"x\"": [429, "timeout"]}) as server:
        server.url            # "http://127.0.0.1:<port>/v1"
        server.requests       # [(path, Authorization header, request JSON), ...] in arrival order
        server.max_in_flight  # the most requests it was answering at once

`answer(body) -> str` gives the assistant message for a request JSON (default: echoes the last message).
`faults` maps the content of a request's last message to the outcome of its successive attempts, each
an HTTP status (int), `(status, retry_after_header)`, "timeout" (the server holds the request `hang`
seconds before answering 200: longer than the client's timeout) or "disconnect" (the connection is
closed without an answer); attempts beyond the list are answered normally. Every request first waits
`latency` seconds. After `max_requests` requests every further one is answered 503 (and counted in
`overflow`), so a client that retries forever cannot hang a test. Threads: one per request
(ThreadingHTTPServer); leaving the `with` block stops the server and wakes any request still held.
"""

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the listen backlog: many clients connect at once
    daemon_threads = True


def _echo(body: dict) -> str:
    return str(body["messages"][-1]["content"])


class LoopbackChatServer:
    def __init__(
        self,
        answer: Callable[[dict], str] = _echo,
        latency: float = 0.0,
        faults: Optional[Dict[str, List]] = None,
        hang: float = 5.0,
        max_requests: int = 10_000,
    ):
        self.answer, self.latency, self.faults, self.hang = answer, latency, dict(faults or {}), hang
        self.max_requests = max_requests
        self.requests: List[tuple] = []
        self.attempts: Counter = Counter()  # last-message content -> requests seen
        self.outcomes: Counter = Counter()  # "200", "429", "timeout", ... -> count
        self.overflow = 0
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = str(body.get("messages", [{}])[-1].get("content"))
                with owner._lock:
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                    over = len(owner.requests) >= owner.max_requests
                    if over:
                        owner.overflow += 1
                    else:
                        owner.requests.append((self.path, self.headers.get("Authorization"), body))
                    attempt = owner.attempts[key]
                    owner.attempts[key] += 1
                try:
                    plan = owner.faults.get(key, [])
                    fault = 503 if over else plan[attempt] if attempt < len(plan) else None
                    owner._stop.wait(owner.latency)
                    self._answer(body, fault)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on this request (its timeout)
                finally:
                    with owner._lock:
                        owner.in_flight -= 1

            def _answer(self, body, fault):
                if fault == "disconnect":
                    owner._count("disconnect")
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "timeout":
                    owner._count("timeout")
                    owner._stop.wait(owner.hang)
                elif fault is not None:
                    status, retry_after = fault if isinstance(fault, tuple) else (fault, None)
                    owner._count(str(status))
                    self.send_response(status)
                    if retry_after is not None:
                        self.send_header("Retry-After", str(retry_after))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                else:
                    owner._count("200")
                message = {"role": "assistant", "content": owner.answer(body)}
                payload = {
                    "id": "loopback",
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

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
