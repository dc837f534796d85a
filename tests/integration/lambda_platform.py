"""A stand-in for the AWS Lambda platform's local APIs, as documented.

The platform itself cannot run here. What the function's runtime and an extension
talk to is two HTTP APIs on ``AWS_LAMBDA_RUNTIME_API``, both documented by AWS: the
Runtime API (``/2018-06-01/runtime/invocation/next``, ``…/{id}/response``,
``…/{id}/error``, ``/2018-06-01/runtime/init/error``) and the Extensions API
(``/2020-01-01/extension/register``, ``/2020-01-01/extension/event/next`` with
``INVOKE`` and ``SHUTDOWN`` events). This serves both, so a real runtime client
(``awslambdaric``) and a real extension process can be driven through invocations
and a shutdown, in the platform's order: the extension is told of each invocation as
the runtime is, and of the shutdown after the last.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:layer-fn"


class LambdaPlatform:
    """Runtime and Extensions APIs on 127.0.0.1; :meth:`invoke` runs one invocation."""

    def __init__(self) -> None:
        self._invocations: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._extension_events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._results: dict[str, queue.Queue[tuple[str, bytes]]] = {}
        self.registered = threading.Event()
        self.extension_names: list[str] = []
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _reply(self, status: int, body: bytes = b"",
                       headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/2018-06-01/runtime/invocation/next":
                    request_id, event = platform._invocations.get()
                    self._reply(200, event, {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
                        "Lambda-Runtime-Invoked-Function-Arn": ARN,
                        "Lambda-Runtime-Trace-Id":
                            "Root=1-5759e988-bd862e3fe1be46a994272793;"
                            "Parent=53995c3f42cd8ad8;Sampled=1",
                        "Content-Type": "application/json"})
                elif self.path == "/2020-01-01/extension/event/next":
                    self._reply(200, json.dumps(platform._extension_events.get()).encode(),
                                {"Content-Type": "application/json"})
                else:
                    self._reply(404)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.strip("/").split("/")
                if self.path == "/2020-01-01/extension/register":
                    platform.extension_names.append(self.headers["Lambda-Extension-Name"])
                    self._reply(200, json.dumps({"functionName": "layer-fn",
                                                 "functionVersion": "$LATEST",
                                                 "handler": "handler.handler"}).encode(),
                                {"Lambda-Extension-Identifier": str(uuid.uuid4())})
                    platform.registered.set()
                elif parts[:3] == ["2018-06-01", "runtime", "invocation"] and len(parts) == 5:
                    platform._results[parts[3]].put((parts[4], body))
                    self._reply(202)
                elif self.path == "/2018-06-01/runtime/init/error":
                    self._reply(202)
                else:
                    self._reply(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event: Any, timeout_s: float = 30.0) -> tuple[str, Any]:
        """One invocation: ``("response" | "error", decoded body)``."""
        request_id = str(uuid.uuid4())
        self._results[request_id] = queue.Queue()
        self._extension_events.put({
            "eventType": "INVOKE", "requestId": request_id, "invokedFunctionArn": ARN,
            "deadlineMs": int(time.time() * 1000) + 30_000})
        self._invocations.put((request_id, json.dumps(event).encode()))
        try:
            outcome, body = self._results[request_id].get(timeout=timeout_s)
        finally:
            del self._results[request_id]
        return outcome, json.loads(body)

    def shut_down(self, budget_ms: int = 2_000) -> None:
        """Tell the extension the instance is going away (``SHUTDOWN``, spindown)."""
        self._extension_events.put({
            "eventType": "SHUTDOWN", "shutdownReason": "spindown",
            "deadlineMs": int(time.time() * 1000) + budget_ms})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
