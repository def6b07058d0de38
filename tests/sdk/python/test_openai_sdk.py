"""The platform's OpenAI-compatible routes as the official Python SDK sees them.

Run by deploy/local/sdk-tests.sh with the project's .venv, against a server whose OpenAI-compatible
provider is tests/sdk/mock_model.py. Env: BASE_URL, API_KEY, PLATFORM_KEY, TENANT_ID, MOCK_LOG.
SDK_DRY_RUN=1 points the same checks at the mock itself (BASE_URL = the mock), skipping what only
the platform does (run records, citations, auth, validation, quotas): it tests the tests.
"""

import json
import math
import os
import sys
import traceback
import urllib.error
import urllib.request
import uuid

import openai
from openai import OpenAI

sys.dont_write_bytecode = True  # no __pycache__ beside the mock in the work tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mock_model  # noqa: E402  (the expected vectors are the mock's own function)

BASE_URL = os.environ["BASE_URL"].rstrip("/")
API_KEY = os.environ["API_KEY"]
MOCK_LOG = os.environ["MOCK_LOG"]
DRY_RUN = os.environ.get("SDK_DRY_RUN") == "1"
AGENT = "sdk-agent"
SPACE = "sdk-mock"

client = OpenAI(base_url=BASE_URL + "/v1", api_key=API_KEY, max_retries=0)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_QUESTION = {"role": "user", "content": "What is the weather in Paris?"}
WEATHER_CALL = {"id": "call_weather_1", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


class MockLog:
    """What the mock reported since a mark: the platform must pass exactly that on."""

    def __init__(self):
        self.start = self._count()

    @staticmethod
    def _entries():
        try:
            with open(MOCK_LOG, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def _count(self):
        return len(self._entries())

    def entries(self, path):
        return [e for e in self._entries()[self.start:] if e["path"].endswith(path)]

    def chat(self):
        entries = self.entries("/chat/completions")
        assert entries, "the mock model was not called"
        return entries

    def usage(self):
        entries = self.chat()
        return {k: sum(e["usage"][k] for e in entries) for k in ("prompt_tokens", "completion_tokens")}

    def content(self):
        return "".join(e["content"] for e in self.chat())


def http(method, path, token, body=None):
    """A request beside the SDK (run records, tenant settings): (status, JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE_URL + path, data=data, method=method,
                                     headers={"authorization": f"Bearer {token}",
                                              "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    return status, (json.loads(raw) if raw else None)


def assert_usage(usage, log):
    reported = log.usage()
    assert usage is not None, "no usage"
    assert usage.prompt_tokens == reported["prompt_tokens"], (usage, reported)
    assert usage.completion_tokens == reported["completion_tokens"], (usage, reported)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage


def assert_openai_error(e, status, kind=None, code=None):
    """OpenAI's error shape, which the SDK reads into typed exceptions and their fields."""
    assert e.status_code == status, (e.status_code, e.response.text)
    body = e.response.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "param", "code"} <= set(body["error"]), body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    if kind is not None:
        assert e.type == kind, body
    if code is not None:
        assert e.code == code, body


def completion_uuid(completion_id):
    assert completion_id.startswith("chatcmpl-"), completion_id
    return uuid.UUID(completion_id.removeprefix("chatcmpl-"))


def test_models_list():
    models = client.models.list()
    listed = {m.id: m for m in models.data}
    assert AGENT in listed, list(listed)
    for m in models.data:
        raw = m.to_dict()
        assert {"id", "object", "created", "owned_by"} <= set(raw), raw
        assert raw["object"] == "model" and isinstance(raw["created"], int), raw
        assert isinstance(raw["owned_by"], str), raw


def test_chat_completion():
    log = MockLog()
    completion = client.chat.completions.create(model=AGENT, messages=[{"role": "user", "content": "Hello"}])
    assert completion.object == "chat.completion", completion
    choice = completion.choices[0]
    assert choice.message.role == "assistant", choice
    assert choice.message.content == log.content(), (choice.message.content, log.content())
    assert choice.message.content == "Echo: Hello", choice.message.content
    assert choice.finish_reason == "stop", choice
    assert_usage(completion.usage, log)
    if DRY_RUN:
        return
    run_id = completion_uuid(completion.id)
    assert isinstance(completion.to_dict().get("citations"), list), completion.to_dict()
    status, run = http("GET", f"/v1/runs/{run_id}", API_KEY)
    assert status == 200, (status, run)
    assert run["conversation_id"] is None and run["message_id"] is None, run
    assert run["status"] == "completed", run


def test_chat_completion_max_tokens():
    # Beyond the brief: a client's max_tokens reaches the model, and a cut answer says so.
    log = MockLog()
    completion = client.chat.completions.create(
        model=AGENT, messages=[{"role": "user", "content": "one two three four five"}], max_tokens=2)
    sent = log.chat()[-1]["request"]
    assert 2 in (sent.get("max_tokens"), sent.get("max_completion_tokens")), sent
    assert completion.choices[0].message.content == "Echo: one ", completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "length", completion.choices[0]
    assert_usage(completion.usage, log)


def test_chat_stream_with_usage():
    log = MockLog()
    stream = client.chat.completions.create(model=AGENT, messages=[{"role": "user", "content": "Stream me"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks, "no chunks"
    ids = {c.id for c in chunks}
    assert len(ids) == 1, ids
    if not DRY_RUN:
        completion_uuid(ids.pop())
    assert all(c.object == "chat.completion.chunk" for c in chunks), [c.object for c in chunks]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == log.content() == "Echo: Stream me", (content, log.content())
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks), chunks
    last = chunks[-1]
    assert last.choices == [], last
    assert_usage(last.usage, log)
    assert all(c.usage is None for c in chunks[:-1]), [c.usage for c in chunks]


def test_chat_stream_without_usage():
    log = MockLog()
    chunks = list(client.chat.completions.create(
        model=AGENT, messages=[{"role": "user", "content": "No usage"}], stream=True))
    assert all(c.usage is None for c in chunks), [c.usage for c in chunks]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == log.content() == "Echo: No usage", (content, log.content())


def test_tool_call_round_trip():
    log = MockLog()
    completion = client.chat.completions.create(model=AGENT, messages=[WEATHER_QUESTION], tools=[WEATHER_TOOL])
    sent = log.chat()[-1]["request"]
    assert [t["function"]["name"] for t in sent.get("tools") or []] == ["get_weather"], sent
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.id == "call_weather_1" and call.type == "function", call
    assert call.function.name == "get_weather", call
    assert json.loads(call.function.arguments) == {"city": "Paris"}, call
    assert_usage(completion.usage, log)

    log = MockLog()
    history = [WEATHER_QUESTION, {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
               {"role": "tool", "tool_call_id": "call_weather_1", "content": "Sunny, 21 C"}]
    answer = client.chat.completions.create(model=AGENT, messages=history, tools=[WEATHER_TOOL])
    sent = log.chat()[-1]["request"]["messages"]
    assert sent[-1].get("role") == "tool" and sent[-1].get("tool_call_id") == "call_weather_1", sent
    assert any(m.get("role") == "assistant" and m.get("tool_calls") for m in sent), sent
    assert answer.choices[0].finish_reason == "stop", answer.choices[0]
    assert "Sunny" in (answer.choices[0].message.content or ""), answer.choices[0].message
    assert answer.choices[0].message.content == log.content(), (answer.choices[0].message, log.content())


def test_tool_call_streamed():
    log = MockLog()
    chunks = list(client.chat.completions.create(model=AGENT, messages=[WEATHER_QUESTION],
                                                 tools=[WEATHER_TOOL], stream=True))
    calls = {}
    for c in chunks:
        for piece in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            call = calls.setdefault(piece.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = piece.id or call["id"]
            if piece.function:
                call["name"] += piece.function.name or ""
                call["arguments"] += piece.function.arguments or ""
    assert list(calls) == [0], calls
    assert calls[0]["id"] == "call_weather_1" and calls[0]["name"] == "get_weather", calls
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}, calls
    assert any(c.choices and c.choices[0].finish_reason == "tool_calls" for c in chunks), chunks
    log.chat()


def test_bad_api_key():
    bad = OpenAI(base_url=BASE_URL + "/v1", api_key="not-a-key", max_retries=0)
    try:
        bad.chat.completions.create(model=AGENT, messages=[{"role": "user", "content": "Hello"}])
    except openai.AuthenticationError as e:
        assert_openai_error(e, 401)
    else:
        raise AssertionError("a bad key was accepted")


def test_unknown_model():
    try:
        client.chat.completions.create(model="no-such-agent", messages=[{"role": "user", "content": "Hello"}])
    except openai.NotFoundError as e:
        assert_openai_error(e, 404, code="model_not_found")
    else:
        raise AssertionError("an unknown model was answered")


def test_empty_messages():
    try:
        client.chat.completions.create(model=AGENT, messages=[])
    except openai.UnprocessableEntityError as e:
        assert_openai_error(e, 422, kind="invalid_request_error")
    else:
        raise AssertionError("an empty conversation was answered")


def test_quota_exceeded():
    platform_key, tenant = os.environ["PLATFORM_KEY"], os.environ["TENANT_ID"]
    status, body = http("PATCH", f"/v1/tenants/{tenant}", platform_key, {"daily_token_quota": 1})
    assert status == 200, (status, body)
    try:
        # The earlier tests have spent more than one token today.
        client.chat.completions.create(model=AGENT, messages=[{"role": "user", "content": "Hello"}])
    except openai.RateLimitError as e:
        assert_openai_error(e, 429, code="quota_exceeded")
        retry_after = e.response.headers.get("retry-after", "")
        assert retry_after and (not retry_after.isdigit() or int(retry_after) > 0), dict(e.response.headers)
    else:
        raise AssertionError("a tenant over its quota was answered")
    finally:
        status, body = http("PATCH", f"/v1/tenants/{tenant}", platform_key, {"daily_token_quota": None})
        assert status == 200, ("quota not reset", status, body)


def test_embeddings():
    result = client.embeddings.create(model=SPACE, input=["a", "b"])
    assert [d.index for d in result.data] == [0, 1], result
    for d, text in zip(result.data, ["a", "b"]):
        assert len(d.embedding) == 8 and all(isinstance(x, float) for x in d.embedding), d
        expected = mock_model.vector(text)
        assert all(math.isclose(x, y, abs_tol=1e-5) for x, y in zip(d.embedding, expected)), (d.embedding, expected)
    assert result.usage.prompt_tokens > 0, result.usage
    # Asked for explicitly, floats come back as JSON numbers (the SDK asks for base64 by default).
    floats = client.embeddings.create(model=SPACE, input="a", encoding_format="float")
    assert len(floats.data) == 1 and len(floats.data[0].embedding) == 8, floats
    assert all(math.isclose(x, y, abs_tol=1e-5) for x, y in zip(floats.data[0].embedding, mock_model.vector("a")))


def test_embeddings_single_input():
    result = client.embeddings.create(model=SPACE, input="just one")
    assert len(result.data) == 1 and len(result.data[0].embedding) == 8, result


def test_embeddings_unknown_model():
    try:
        client.embeddings.create(model="no-such-space", input="a")
    except openai.NotFoundError as e:
        assert_openai_error(e, 404)
    else:
        raise AssertionError("an unknown embedding model was answered")


# The quota test runs last: it needs tokens already spent, and a failure to lift the quota again
# must not fail the tests after it.
TESTS = [test_models_list, test_chat_completion, test_chat_completion_max_tokens, test_chat_stream_with_usage,
         test_chat_stream_without_usage, test_tool_call_round_trip, test_tool_call_streamed, test_bad_api_key,
         test_unknown_model, test_empty_messages, test_embeddings, test_embeddings_single_input,
         test_embeddings_unknown_model, test_quota_exceeded]
# What only the platform does: the mock has no keys, validation or quotas.
SERVER_ONLY = {test_bad_api_key, test_empty_messages, test_quota_exceeded}


def main():
    passed = failed = skipped = 0
    for test in TESTS:
        if DRY_RUN and test in SERVER_ONLY:
            skipped += 1
            continue
        try:
            test()
            passed += 1
        except Exception:  # noqa: BLE001  (every failure is reported, then the next test runs)
            failed += 1
            print(f"FAIL {test.__name__}", file=sys.stderr)
            traceback.print_exc()
    print(f"python-sdk: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
