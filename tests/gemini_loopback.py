"""A loopback Gemini `generateContent` server for the tests that drive the real google-genai
client (the dataset's Gemini source, the LLM judge, the data track's `gemini` reference).

Scripted: each request's prompt is mapped to a script key (`key_of`); a script is a list of
(status, reply text) consumed in order, the last one repeating; an unscripted key gets HTTP 400.
A HANG step holds the connection open without a byte of reply, for at most `hang_s` seconds or
until the server stops, so a client timeout is what ends the request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG = 0  # a script status: accept the request and never answer (until the server stops)
MESSAGES = {
    400: ("Not scripted", "INVALID_ARGUMENT"),
    429: ("Resource exhausted", "RESOURCE_EXHAUSTED"),
    500: ("Internal error", "INTERNAL"),
}


def reply(text: str, usage: dict | None = None) -> dict:
    """A successful generateContent reply carrying `text`."""
    payload = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
        ],
        "modelVersion": "gemini-test",
    }
    if usage:
        payload["usageMetadata"] = usage
    return payload


class ScriptedGemini:
    """Serve scripted replies on 127.0.0.1; `requests` records each one as {path, key (the API
    key header), <field> (the script key), prompt, body}."""

    def __init__(
        self,
        script: dict[str, list[tuple[int, str]]],
        key_of: Callable[[str], str],
        field: str,
        usage: dict | None = None,
        hang_s: float = 10.0,
    ):
        self.script = {k: list(v) for k, v in script.items()}
        self.field = field
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["contents"][0]["parts"][0]["text"]
                name = key_of(prompt)
                with owner.lock:
                    owner.requests.append(
                        {
                            "path": self.path,
                            "key": self.headers.get("x-goog-api-key"),
                            field: name,
                            "prompt": prompt,
                            "body": body,
                        }
                    )
                    steps = owner.script.get(name, [(400, "")])
                    status, text = steps.pop(0) if len(steps) > 1 else steps[0]
                if status == HANG:
                    owner.stopping.wait(hang_s)
                    self.close_connection = True
                    return
                if status == 200:
                    payload = reply(text, usage)
                else:
                    message, code = MESSAGES.get(status, ("Service unavailable", "UNAVAILABLE"))
                    payload = {"error": {"code": status, "message": message, "status": code}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def count(self, name: str) -> int:
        return sum(r[self.field] == name for r in self.requests)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()  # release hung handlers, so server_close does not wait on them
        self.server.shutdown()
        self.server.server_close()
