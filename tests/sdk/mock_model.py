"""An OpenAI-compatible model and embedder for the SDK tests (`deploy/local/sdk-tests.sh`).

  mock_model.py PORT [PID]   serve on 127.0.0.1:PORT until killed, or until process PID is gone

Answers are a pure function of the request, so a test can say what the platform must hand back
without a real model:
- chat: "Echo: <last user message>" streamed one word per chunk, or, after a tool message,
  "The tool said: <its content>"; a user message that mentions the weather, when `get_weather` is
  among the tools, gets a streamed call of it instead. At most `max_tokens` pieces are sent.
- usage: prompt_tokens = characters of every message's text // 4 + 1, completion_tokens = pieces
  sent; reported in a last chunk when `stream_options.include_usage` asks for it (our server always
  does), and always in a whole (non-streamed) answer.
- embeddings: 8 unit-length floats derived from a hash of each input (float lists, or base64 when
  `encoding_format` says so, as the official SDKs ask by default).

Each answered request is appended as a JSON line to $MOCK_LOG (when set): what the platform sent
and the usage reported, so a test can compare the platform's usage with the provider's.
`/v1/models` and answering a whole (non-streamed) completion exist so the SDK tests can run against
the mock alone (SDK_DRY_RUN=1), which checks the tests before the server side exists.
Standard library only: it runs with whatever python3 the machine has.
"""

import base64
import hashlib
import json
import math
import os
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIMS = 8
# The server asks for `mock`; the dry run asks for the names it would give the platform.
MODELS = ("mock", "sdk-agent", "sdk-mock")
LOG_LOCK = threading.Lock()


def text_of(content):
    """A message's text: a string, a list of parts (only text parts count), or nothing."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def words(text):
    """The answer's pieces, one word each, with its trailing space, so they join back exactly."""
    parts = text.split(" ")
    return [w + " " for w in parts[:-1]] + [parts[-1]]


def wants_weather(body):
    last = body["messages"][-1]
    offered = {t.get("function", {}).get("name") for t in body.get("tools") or []}
    return (last.get("role") == "user" and "get_weather" in offered
            and "weather" in text_of(last.get("content")).lower())


def plan_chat(body):
    """What the mock answers: (content pieces, tool-call argument pieces, finish_reason, usage)."""
    messages = body["messages"]
    prompt_tokens = sum(len(text_of(m.get("content"))) for m in messages) // 4 + 1
    if wants_weather(body):
        pieces, arguments, finish = [], ['{"city":', '"Paris"}'], "tool_calls"
        completion_tokens = len(arguments)
    else:
        last = messages[-1]
        if last.get("role") == "tool":
            text = "The tool said: " + text_of(last.get("content"))
        else:
            user = [m for m in messages if m.get("role") == "user"]
            text = "Echo: " + (text_of(user[-1].get("content")) if user else "")
        pieces, arguments, finish = words(text), [], "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit is not None and len(pieces) > limit:
            pieces, finish = pieces[:limit], "length"
        completion_tokens = len(pieces)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}
    return pieces, arguments, finish, usage


def vector(text):
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(b - 127.5) / 127.5 for b in digest[:DIMS]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def log(entry):
    path = os.environ.get("MOCK_LOG")
    if not path:
        return
    with LOG_LOCK, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        # Quiet on success: a failing test says what it got.
        pass

    def send_json(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, status, message, kind, code=None):
        self.send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            self.send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "mock"} for m in MODELS]})
        else:
            self.send_error_json(404, f"no route {self.path}", "invalid_request_error")

    def do_POST(self):
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        except ValueError:
            self.send_error_json(400, "the body is not JSON", "invalid_request_error")
            return
        model = body.get("model")
        if self.path.endswith("/chat/completions") or self.path.endswith("/embeddings"):
            if model not in MODELS:
                self.send_error_json(404, f"The model `{model}` does not exist", "invalid_request_error",
                                     "model_not_found")
                return
        if self.path == "/v1/chat/completions":
            if not body.get("messages"):
                self.send_error_json(400, "messages must not be empty", "invalid_request_error")
                return
            self.chat(body)
        elif self.path == "/v1/embeddings":
            self.embeddings(body)
        else:
            self.send_error_json(404, f"no route {self.path}", "invalid_request_error")

    def chat(self, body):
        pieces, arguments, finish, usage = plan_chat(body)
        tool_call = {"id": "call_weather_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "".join(arguments)}}
        # Logged before answering: once the platform has the usage, so has the log.
        log({"path": self.path, "request": body, "content": "".join(pieces),
             "tool_calls": [tool_call] if arguments else [], "finish_reason": finish, "usage": usage})
        completion_id = f"chatcmpl-mock-{uuid.uuid4().hex[:12]}"
        created = int(time.time())
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(pieces) if not arguments else None}
            if arguments:
                message["tool_calls"] = [tool_call]
            self.send_json(200, {"id": completion_id, "object": "chat.completion", "created": created,
                                 "model": body["model"], "usage": usage,
                                 "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
            return

        def chunk(choices, **extra):
            return {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": body["model"], "choices": choices, **extra}

        def delta(d, finish_reason=None):
            return chunk([{"index": 0, "delta": d, "finish_reason": finish_reason}])

        events = [delta({"role": "assistant", "content": ""})]
        events += [delta({"content": p}) for p in pieces]
        for i, part in enumerate(arguments):
            call = {"index": 0, "function": {"arguments": part}}
            if i == 0:
                call.update(id=tool_call["id"], type="function")
                call["function"]["name"] = "get_weather"
            events.append(delta({"tool_calls": [call]}))
        events.append(delta({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(chunk([], usage=usage))

        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        # No length and no chunked framing: the end of the stream is the end of the connection.
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        for event in events:
            self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")

    def embeddings(self, body):
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        inputs = [t if isinstance(t, str) else json.dumps(t) for t in inputs]
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(inputs):
            v = vector(text)
            encoded = base64.b64encode(struct.pack(f"<{DIMS}f", *v)).decode() if as_base64 else v
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(len(t) // 4 + 1 for t in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        log({"path": self.path, "request": body, "usage": usage})
        self.send_json(200, {"object": "list", "data": data, "model": body["model"], "usage": usage})


def exit_with(pid):
    """Ends the mock once `pid` (the script that started it) is gone, however that script ended:
    a trap can be replaced or never run (kill -9), and a mock left on its port fails the next run."""
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass
        time.sleep(1)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("MOCK_PORT", "18094"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    if len(sys.argv) > 2:
        threading.Thread(target=exit_with, args=(int(sys.argv[2]),), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
