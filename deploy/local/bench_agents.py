"""`just bench-agents`: what the platform adds to a turn, against an OpenAI-compatible mock that
answers at once, over HTTP to the release binary.

  bench_agents.py run BASE TOKEN MOCK_PORT  serve the mock there, build a 10,000-chunk collection,
                                           measure; prints one JSON object
  bench_agents.py report JSON LOCAL OUT  write the section of docs/benchmarks.md

No dependency beyond the standard library: the mock and the client speak HTTP/1.1 over asyncio
streams, so the client can note the moment the mock writes the model's first token and the moment
the platform's stream delivers it on one clock (both in this process).

Turns are posted by the compiled client BENCH_CLIENT (crates/api-actix/examples/bench_client.rs),
a process of its own, so that neither the client's CPU nor its event loop is counted as the
platform's; this process then only serves the mock. `run` also measures `/v1/chat/completions`, and LiteLLM's proxy on the same mock beside it when
bench-agents.sh could start one: LITELLM_URL is its address, LITELLM_KEY its master key and
LITELLM_VERSION its version, or LITELLM_SKIPPED says why there is none. BENCH_QUICK=1 makes every
count and loop small, to try the harness on a debug build (its figures mean nothing).
"""

import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

DIMS = 8
QUICK = os.environ.get("BENCH_QUICK") == "1"
PIECES = ["The ", "answer ", "is ", "42."]
USAGE = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
# The moment the mock wrote the first token of each streamed answer, by a marker in the question.
FIRST_TOKEN_AT = {}
# The mock's own time (ms) answering each turn's calls, by the turn's question number.
MOCK_MS = {}


def scaled(n):
    """`n` requests or seconds, or a tenth of it (at least 1) in quick mode."""
    return max(1, n // 10) if QUICK else n


def json_response(writer, value):
    payload = json.dumps(value).encode()
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                 % len(payload) + payload)


def chunked(data):
    """One piece of a chunked body."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


def chunk(delta, finish=None):
    return {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": "mock",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def question_number(text):
    """The i of a turn's "Question i about ..." (what the mock's own time is counted under)."""
    match = re.match(r"Question (\d+) ", text or "")
    return int(match.group(1)) if match else None


async def handle(reader, writer):
    """Serves requests on one connection until the client closes it: the platform's HTTP client
    keeps connections to its provider open, as it would to a real one."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
            raw = await reader.readexactly(int(headers.get("content-length", "0")))
            # From the whole request to the whole answer nothing here waits on the platform: that
            # span is the mock's own time, taken off the turn's latency it is counted under.
            started = time.perf_counter()
            key = await answer(writer, path, json.loads(raw or b"{}"))
            if key is not None:
                MOCK_MS[key] = MOCK_MS.get(key, 0.0) + (time.perf_counter() - started) * 1000
    except (ConnectionError, asyncio.CancelledError):
        # The platform hung up, or the benchmark ended with the connection still open.
        pass
    finally:
        writer.close()


async def answer(writer, path, body):
    """Writes the answer to one request; answers the turn number it is counted under (none for
    the first-token measurements, whose pauses are deliberate)."""
    if path.endswith("/embeddings"):
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i,
                 "embedding": [((hash(t) >> (4 * d)) % 97) / 97.0 + 0.01 for d in range(DIMS)]}
                for i, t in enumerate(inputs)]
        json_response(writer, {"object": "list", "data": data, "model": body.get("model"),
                               "usage": {"prompt_tokens": 1, "total_tokens": 1}})
        await writer.drain()
        return question_number(inputs[0] if inputs else None)
    question = body["messages"][-1]["content"]
    if not body.get("stream"):
        # The platform always streams from its provider; LiteLLM asks for a whole answer
        # when its own client did.
        json_response(writer, {
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": "mock",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "".join(PIECES)}}],
            "usage": USAGE})
        await writer.drain()
        return question_number(question)
    marker = question.split("#", 1)[1] if "#" in question else None
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                 b"transfer-encoding: chunked\r\n\r\n")
    if marker:
        # A model that thinks a little before its first token, so the platform's part of
        # the delay is what is left once that is taken away.
        await writer.drain()
        await asyncio.sleep(0.02)
    for i, piece in enumerate(PIECES):
        writer.write(chunked(b"data: " + json.dumps(chunk({"content": piece})).encode() + b"\n\n"))
        if i == 0 and marker:
            await writer.drain()
            FIRST_TOKEN_AT[marker] = time.perf_counter()
            # The next tokens come a little later, as a model's do: until then this process
            # (which is also the client) is free to note the first one's arrival, rather than
            # writing the rest of the answer first.
            await asyncio.sleep(0.005)
    writer.write(chunked(b"data: " + json.dumps(chunk({}, "stop")).encode() + b"\n\n"))
    usage = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
             "model": "mock", "choices": [], "usage": USAGE}
    writer.write(chunked(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()
    return None if marker else question_number(question)


async def request(base, method, path, token, body=None, on_bytes=None):
    """One HTTP/1.1 request on its own connection; answers (status, body bytes). Raises
    TimeoutError after two minutes, so that a server that falls behind still ends the run."""
    return await asyncio.wait_for(exchange(base, method, path, token, body, on_bytes), 120)


async def exchange(base, method, path, token, body, on_bytes):
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    data = json.dumps(body).encode() if body is not None else b""
    writer.write(f"{method} {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n"
                 f"content-type: application/json\r\ncontent-length: {len(data)}\r\n"
                 f"connection: close\r\n\r\n".encode() + data)
    await writer.drain()
    received = b""
    while True:
        part = await reader.read(65536)
        if not part:
            break
        received += part
        if on_bytes:
            on_bytes(received)
    writer.close()
    if not received.startswith(b"HTTP/1.1 "):
        return 0, received  # the server hung up without an answer
    status = int(received.split(b" ", 2)[1])
    return status, received.split(b"\r\n\r\n", 1)[1]


def body_json(raw):
    return json.loads(raw)


async def create_agent(base, token, collection=None):
    """An agent on the mock model; answers its id and slug."""
    agent = {"name": "Bench", "slug": f"bench-{int(time.time() * 1000)}",
             "model": {"provider": "openai", "name": "mock"}, "max_tokens": 64}
    if collection:
        agent.update({"collections": [collection], "retrieval": {"top_k": 6, "mode": "hybrid"}})
    status, raw = await request(base, "POST", "/v1/agents", token, agent)
    assert status == 201, raw
    return body_json(raw)["id"], agent["slug"]


async def setup(base, token, collection=None):
    agent_id, _ = await create_agent(base, token, collection)
    conversations = []
    for _ in range(32):
        status, raw = await request(base, "POST", f"/v1/agents/{agent_id}/conversations", token, {})
        assert status == 201, raw
        conversations.append(body_json(raw)["id"])
    return conversations


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def completion(base, key, model):
    """A call that asks `model` (an agent's slug, or LiteLLM's model) for a whole answer over
    `/v1/chat/completions`; answers the status, and 0 for a 200 without the mock's answer."""
    async def call(i):
        status, raw = await request(base, "POST", "/v1/chat/completions", key, {
            "model": model, "messages": [{"role": "user", "content": f"Question {i} about rockets and fuel?"}]})
        return status if status != 200 or b"42." in raw else 0
    return call


def figures(latencies, mock):
    """p50/p99 of the platform's overhead (each latency less the mock's own time in that turn),
    and of the latencies as the client saw them."""
    overheads = [latency - m for latency, m in zip(latencies, mock)]
    return {"p50_ms": pct(overheads, 0.5), "p99_ms": pct(overheads, 0.99),
            "latency_p50_ms": pct(latencies, 0.5), "latency_p99_ms": pct(latencies, 0.99),
            "mock_p50_ms": pct(mock, 0.5), "mock_p99_ms": pct(mock, 0.99)}


async def timed(call, i):
    """Calls `call(i)`: its status, its latency and the mock's own time in it (ms)."""
    MOCK_MS.pop(i, None)
    sent = time.perf_counter()
    status = await call(i)
    return status, (time.perf_counter() - sent) * 1000, MOCK_MS.pop(i, 0.0)


async def open_loop(call, rate, seconds):
    """Calls at `rate` per second whatever the answers' pace."""
    latencies, mock, errors = [], [], 0
    statuses = {}
    start = time.perf_counter()
    total = int(rate * seconds)

    async def one(i):
        nonlocal errors
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        try:
            status, latency, own = await timed(call, i)
        except OSError:  # TimeoutError among them
            status = 0
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            latencies.append(latency)
            mock.append(own)
        else:
            errors += 1

    await asyncio.gather(*(one(i) for i in range(total)))
    return {"rate": rate, "turns": total, "errors": errors, "statuses": statuses,
            **figures(latencies, mock)}


async def client_turns(base, token, conversations, *mode):
    """Turns posted by the compiled client (see the module's doc), while this process serves the
    mock: [(i, status, latency_ms)], the i-th asking "Question i ...". The mock's own time is
    counted afresh."""
    MOCK_MS.clear()
    client = await asyncio.create_subprocess_exec(
        os.environ["BENCH_CLIENT"], base, token, ",".join(conversations), *map(str, mode),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await client.communicate()
    assert client.returncode == 0, f"bench_client exited with {client.returncode}"
    return json.loads(out)


async def turns_in_sequence(base, token, conversations, n):
    """One turn at a time: the cost of one with nothing queued behind it."""
    rows = await client_turns(base, token, conversations, "sequential", n)
    assert all(status == 200 for _, status, _ in rows), [status for _, status, _ in rows]
    return {"n": n, **figures([ms for _, _, ms in rows], [MOCK_MS.get(i, 0.0) for i, _, _ in rows])}


async def turns_open_loop(base, token, conversations, rate, seconds):
    """Turns at `rate` per second whatever the answers' pace."""
    rows = await client_turns(base, token, conversations, "open", rate, seconds)
    statuses = {}
    for _, status, _ in rows:
        statuses[status] = statuses.get(status, 0) + 1
    done = [(i, ms) for i, status, ms in rows if status == 200]
    return {"rate": rate, "turns": len(rows), "errors": len(rows) - len(done), "statuses": statuses,
            **figures([ms for _, ms in done], [MOCK_MS.get(i, 0.0) for i, _ in done])}


# The goal's rate is measured this many times over: a few seconds of another process's work on a
# 2-core machine (autovacuum, a checkpoint, the kernel's writeback) shows in one window's p99 and
# not in the next, so the report gives each window and their median.
REPEATS = 3


async def repeated_open_loop(base, token, conversations, rate, seconds, times):
    """`times` windows of turns at `rate`, one after another on the same conversations: the
    medians of their figures, with each window's p50 and p99."""
    windows = [await turns_open_loop(base, token, conversations, rate, seconds) for _ in range(times)]
    done = [w for w in windows if w["p50_ms"] is not None]
    median = lambda key: statistics.median(w[key] for w in done) if done else None
    return {"rate": rate, "window_s": seconds, "turns": sum(w["turns"] for w in windows),
            "errors": sum(w["errors"] for w in windows),
            **{key: median(key) for key in ("p50_ms", "p99_ms", "latency_p50_ms", "latency_p99_ms",
                                            "mock_p50_ms", "mock_p99_ms")},
            "windows": [{"turns": w["turns"], "errors": w["errors"], "p50_ms": w["p50_ms"],
                         "p99_ms": w["p99_ms"]} for w in windows]}


async def sequential(call, n):
    """Calls one at a time: the cost of one with nothing queued behind it."""
    latencies, mock = [], []
    for i in range(n):
        status, latency, own = await timed(call, i)
        assert status == 200, status
        latencies.append(latency)
        mock.append(own)
    return {"n": n, **figures(latencies, mock)}


async def delays(n, stream):
    """`n` streamed answers one at a time: from the mock's first token to the client's first byte
    of it. `stream(marker, on_bytes)` asks for one whose question carries the marker."""
    found = []
    for i in range(n):
        marker = f"m{i}-{time.time_ns()}"
        seen = {}

        def on_bytes(received):
            at = time.perf_counter()  # before the parsing, which is the client's own time
            if "at" not in seen and first_content(received):
                seen["at"] = at

        status = await stream(marker, on_bytes)
        if status == 200 and "at" in seen and marker in FIRST_TOKEN_AT:
            found.append((seen["at"] - FIRST_TOKEN_AT.pop(marker)) * 1000)
    return {"n": len(found), "p50_ms": pct(found, 0.5), "p99_ms": pct(found, 0.99)}


def first_content(received):
    """Whether the bytes so far hold the first token: the run's `message.delta` event, or a
    `chat.completion.chunk` with content (the chunked encoding's size lines fall between events)."""
    body = received.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in received else b""
    if b"event: message.delta" in body:
        return True
    for line in body.split(b"\n"):
        if line.startswith(b"data: {"):
            try:
                choices = json.loads(line[6:]).get("choices")
            except ValueError:
                continue
            if choices and choices[0].get("delta", {}).get("content"):
                return True
    return False


async def first_token_delays(base, token, conversation, n):
    async def stream(marker, on_bytes):
        status, _ = await request(base, "POST", f"/v1/conversations/{conversation}/messages", token,
                                  {"content": f"Stream this #{marker}", "stream": True}, on_bytes)
        return status
    return await delays(n, stream)


async def completion_first_token_delays(base, key, model, n):
    async def stream(marker, on_bytes):
        status, _ = await request(base, "POST", "/v1/chat/completions", key, {
            "model": model, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"Stream this #{marker}"}]}, on_bytes)
        return status
    return await delays(n, stream)


async def completions(base, key, model):
    """`/v1/chat/completions` at `base`: the streamed first token's delay, then whole answers one
    at a time and at 100/s, after a warm-up of both kinds (connections, caches, lazy imports)."""
    await open_loop(completion(base, key, model), 50, scaled(20) / 10)
    await completion_first_token_delays(base, key, model, scaled(20))
    return {
        "sse_first_token": await completion_first_token_delays(base, key, model, scaled(200)),
        "sequential": await sequential(completion(base, key, model), scaled(200)),
        "open_loop": await open_loop(completion(base, key, model), 100, scaled(15)),
    }


def psql(url, sql):
    subprocess.run([os.environ["AGENTIC_PG_BIN"] + "/psql", url, "-qAtc", sql], check=True,
                   stdout=subprocess.PIPE)


async def collection_of_10k(base, token):
    """A collection in the mock's space: one document through the API, then filler chunks beside
    it in the same generation (random vectors, varied text) up to 10,000."""
    status, raw = await request(base, "POST", "/v1/collections", token,
                                {"name": "Bench 10k", "space_id": "bench-mock"})
    assert status == 201, raw
    collection = body_json(raw)["id"]
    status, raw = await request(base, "POST", f"/v1/collections/{collection}/documents", token,
                                {"title": "Rockets", "content": "A rocket carries its own fuel and oxidiser. " * 20})
    assert status == 202, raw
    job = body_json(raw)["job"]["id"]
    for _ in range(600):
        status, raw = await request(base, "GET", f"/v1/jobs/{job}", token)
        if body_json(raw)["state"] in ("succeeded", "failed", "cancelled"):
            break
        await asyncio.sleep(0.1)
    assert body_json(raw)["state"] == "succeeded", raw
    psql(os.environ["DATABASE_PLATFORM_URL"], f"""
        INSERT INTO chunks (tenant_id, id, collection_id, document_id, generation_id, space_id,
                            position, content, token_count, metadata, embedding)
        SELECT c.tenant_id, gen_random_uuid(), c.collection_id, c.document_id, c.generation_id,
               c.space_id, 1000 + i,
               'filler passage ' || i || ' on topic ' || (i % 97) || ' with words fuel engine orbit ' || (i % 13),
               12, '{{}}'::jsonb,
               ('[' || array_to_string(ARRAY(SELECT (random() + i * 0)::real FROM generate_series(1, {DIMS})), ',') || ']')::vector
        FROM (SELECT * FROM chunks WHERE collection_id = '{collection}' LIMIT 1) c,
             generate_series(1, 10000 - (SELECT count(*) FROM chunks WHERE collection_id = '{collection}')) i;
        UPDATE generations g SET chunk_count = (SELECT count(*) FROM chunks WHERE generation_id = g.id)
        WHERE collection_id = '{collection}';""")
    # Vacuumed now, so that autovacuum does not take the 10,000 new rows in hand mid-measurement.
    psql(os.environ["DATABASE_OWNER_URL"], "VACUUM (ANALYZE) chunks")
    # The 10,000 rows just written are dirty pages the kernel would write back during the first
    # measurement, and a commit's flush queued behind them took tens of ms here: written now.
    os.sync()
    return collection


async def run(base, token, mock_port):
    server = await asyncio.start_server(handle, "127.0.0.1", int(mock_port))
    async with server:
        collection = await collection_of_10k(base, token)
        results = {}
        plain = await setup(base, token)
        # Warm up connections, caches and the planner.
        await turns_open_loop(base, token, plain, 50, scaled(20) / 10)
        results["sse_first_token"] = await first_token_delays(base, token, (await setup(base, token))[0], scaled(200))
        for name, conversations in [("no_retrieval", plain), ("retrieval", await setup(base, token, collection))]:
            results[f"{name}_sequential"] = await turns_in_sequence(base, token, conversations, scaled(100))
            steps = []
            for rate in (100, 200, 400):
                fresh = conversations if rate == 100 else await setup(base, token, collection if name == "retrieval" else None)
                if rate == 100:
                    step = await repeated_open_loop(base, token, fresh, rate, scaled(10), REPEATS)
                else:
                    step = await turns_open_loop(base, token, fresh, rate, scaled(8))
                steps.append(step)
                if step["errors"]:
                    break
            results[name] = steps
        _, slug = await create_agent(base, token)
        results["completions"] = {"platform": await completions(base, token, slug)}
        if os.environ.get("LITELLM_URL"):
            # Someone else's server: its failure is a line in the report, not a lost run.
            try:
                litellm = await completions(os.environ["LITELLM_URL"], os.environ["LITELLM_KEY"], "mock")
                results["completions"]["litellm"] = {"version": os.environ.get("LITELLM_VERSION"), **litellm}
            except (AssertionError, OSError, ValueError) as e:
                results["completions"]["litellm"] = {"skipped": f"its proxy failed during the run ({e!r})"}
        else:
            results["completions"]["litellm"] = {"skipped": os.environ.get("LITELLM_SKIPPED", "not started")}
        print(json.dumps(results))


def cpu():
    name = "unknown"
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and name == "unknown":
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return f"{name}, {os.cpu_count()} cores ({', '.join(shown)})"


def ms(figure):
    return f"{figure:.2f}" if figure is not None else "–"


def completions_lines(c):
    """The `/v1/chat/completions` paragraph and table: the platform, and LiteLLM beside it."""
    if not c:
        return []
    ours, theirs = c["platform"], c["litellm"]
    sse = ours["sse_first_token"]
    rows = [("the platform (this build)", ours)]
    if "skipped" not in theirs:
        rows.append((f"LiteLLM {theirs['version']} proxy", theirs))
    lines = [
        "`/v1/chat/completions` with an agent as the model (no retrieval), against the same mock in the "
        "same run, and LiteLLM's proxy beside it on the same mock when it installs. A whole answer "
        "(`stream` false) is one request; as for turns, the mock's own time is taken off its latency, "
        "which leaves the server's overhead plus the loopback HTTP of both hops. The platform's call is a run like a turn (authenticating the key, the agent, the run "
        "committed and metered, the model called through the real adapter, which always streams); "
        "LiteLLM runs with a master key, no database and a worker per core, its defaults otherwise. "
        "The streamed first token's delay is measured as for turns, over the `chat.completion.chunk` "
        "stream.",
        "",
        "| server | whole answer, one at a time: overhead p50 / p99 (ms) | at 100/s: sent | errors | overhead p50 / p99 (ms) "
        "| streamed first token's delay: p50 / p99 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for label, m in rows:
        one, loop, first = m["sequential"], m["open_loop"], m["sse_first_token"]
        lines.append(f"| {label} | {ms(one['p50_ms'])} / {ms(one['p99_ms'])} | {loop['turns']} | "
                     f"{loop['errors']} | {ms(loop['p50_ms'])} / {ms(loop['p99_ms'])} | "
                     f"{ms(first['p50_ms'])} / {ms(first['p99_ms'])} |")
    # A server that cannot keep up shows queueing, not its overhead: say so beside the figures.
    behind = "; ".join(
        f"{label} fell behind at 100/s here (its answers queued: p50 {ms(m['open_loop']['p50_ms'])} ms "
        f"against {ms(m['sequential']['p50_ms'])} ms one at a time)"
        for label, m in rows
        if m["open_loop"]["p50_ms"] and m["open_loop"]["p50_ms"] > 5 * m["sequential"]["p50_ms"])
    met = sse["p99_ms"] is not None and sse["p99_ms"] < 1
    lines += [
        "",
        *([behind[0].upper() + behind[1:] + ".", ""] if behind else []),
        f"Goal for the platform's delay between the model's first token and the client's first byte of "
        f"it over `/v1/chat/completions` ({sse['n']} streamed calls, one at a time): under 1 ms at p99"
        + (" (met)." if met else ": **not met**.")
        + (f" LiteLLM was not measured: {theirs['skipped']}." if "skipped" in theirs else
           " For context, LiteLLM publishes a p99 of 5.9 ms for its proxy at 100 requests/s, on its "
           "own machines and method; the row above is its proxy on this machine in this run."),
        "",
    ]
    return lines


def report(results_path, local_path, out):
    r = json.load(open(results_path))
    local = json.load(open(local_path)) if os.path.exists(local_path) else None
    llama = None
    llama_path = local_path.replace("local.json", "llama.json")
    if os.path.exists(llama_path):
        llama = json.load(open(llama_path))
    lines = [
        "## Agents (`just bench-agents`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu()}, release build, over HTTP on one machine. The chat",
        "model and the embedder are a mock OpenAI-compatible server that answers at once and keeps its",
        "connections open, as a provider does. The mock notes its own time in each turn (from a whole",
        "request to its whole answer, nothing in between waiting on the platform), and the overhead is the",
        "client's latency less that: the platform's own work per turn, authenticating, committing the",
        "question and the run, loading the conversation, retrieving (over 10,000 chunks where said),",
        "calling the model through the real adapter, publishing the events, storing the answer, and",
        "answering. The client (compiled, one thread, a process of its own) opens a connection per turn. Open loop: turns are sent at the rate whatever",
        "the answers' pace, round robin over 32 conversations (each conversation's history grows).",
        "",
        "| turns | rate (turns/s) | sent | errors | overhead p50 (ms) | overhead p99 (ms) | latency p50 / p99 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    held = {}
    for name in ("no_retrieval", "retrieval"):
        for step in r[name]:
            label = "without retrieval" if name == "no_retrieval" else "with retrieval (10,000 chunks)"
            lines.append(f"| {label} | {step['rate']} | {step['turns']} | {step['errors']} | "
                         f"{step['p50_ms']:.1f} | {step['p99_ms']:.1f} | "
                         f"{step['latency_p50_ms']:.1f} / {step['latency_p99_ms']:.1f} |"
                         if step["p50_ms"] is not None else
                         f"| {label} | {step['rate']} | {step['turns']} | {step['errors']} | – | – | – |")
            if not step["errors"]:
                held[name] = step["rate"]
    windows = [(name, r[name][0]) for name in ("no_retrieval", "retrieval") if r[name][0].get("windows")]
    if windows:
        lines += [
            "",
            f"At 100 turns/s the figures are the medians of {len(windows[0][1]['windows'])} windows of "
            f"{windows[0][1]['window_s']} s, one after another on the same conversations (sent and errors: their sums); "
            "overhead p50 / p99 of each window, "
            + "; ".join(
                ("without retrieval " if name == "no_retrieval" else "with retrieval ")
                + ", ".join(f"{w['p50_ms']:.1f} / {w['p99_ms']:.1f}" if w["p50_ms"] is not None else "–"
                            for w in step["windows"])
                for name, step in windows)
            + " ms.",
        ]
    sse = r["sse_first_token"]
    one = [r.get(f"{k}_sequential") for k in ("no_retrieval", "retrieval")]
    if all(one):
        lines += [
            "",
            f"One turn at a time ({one[0]['n']} turns, nothing queued), overhead: p50 {one[0]['p50_ms']:.1f} ms, "
            f"p99 {one[0]['p99_ms']:.1f} ms without retrieval; p50 {one[1]['p50_ms']:.1f} ms, p99 "
            f"{one[1]['p99_ms']:.1f} ms with it. The mock's own time in a turn: p50 "
            f"{one[0]['mock_p50_ms']:.2f} ms without retrieval, {one[1]['mock_p50_ms']:.2f} ms with it "
            "(the question's embedding too).",
        ]
    lines += [
        "",
        f"Highest rate held without an error (of the rates tried): {held.get('no_retrieval', 'below 100')} "
        f"turns/s without retrieval, {held.get('retrieval', 'below 100')} with it. Errors are 409 "
        "`answer_in_progress`: a conversation's next turn arrived while its previous answer was being "
        "written. Goals: p99 under 5 ms without retrieval and under 20 ms with it at 100 turns/s"
        + (" (met)." if r["no_retrieval"][0]["p99_ms"] and r["no_retrieval"][0]["p99_ms"] < 5
           and r["retrieval"][0]["p99_ms"] and r["retrieval"][0]["p99_ms"] < 20 else
           ": **not met**. On 2 cores the client, the mock (a Python process), PostgreSQL and "
           "Redis share the CPU with the server, and open-loop figures vary by 2x from run to run "
           "here; where a turn's time goes is in the next section."),
        "",
        f"Delay between the model's first token and the client's first byte of it over the run's event "
        f"stream ({sse['n']} streamed turns, one at a time; the mock and the client share one clock, and "
        f"the mock sends the first token alone, the rest 5 ms later): "
        f"p50 {sse['p50_ms']:.2f} ms, p99 {sse['p99_ms']:.2f} ms (goal: under 1 ms at p99"
        + (", met)." if sse["p99_ms"] < 1 else ", not met at p99)."),
        "",
    ]
    lines += completions_lines(r.get("completions"))
    if local:
        lines += [
            "Local model, SmolLM2-135M-Instruct Q4_1 on candle-transformers' quantized llama, greedy, "
            "128 tokens, median of its runs (`cargo run --release -p chat-candle --example bench_local`): "
            f"{local['tokens_per_s']:.1f} tokens/s, first token after {local['time_to_first_token_ms']:.0f} ms, "
            f"resident memory {local['rss_mib']:.0f} MiB (goal: at least 40 tokens/s"
            + (", met)." if local["tokens_per_s"] >= 40 else ", not met).")
            + " The weights are converted from Q4_1 to Q8_0 as they load: Candle's Q4_1 dot product is "
            "scalar on every CPU (78% of the time and 19.5 tokens/s in a `perf` profile), its Q8_0 one "
            "vectorised. Candle's pool is sized by `RAYON_NUM_THREADS` (`just run` sets it to the core "
            "count: about +20%). A long prompt is still slow: "
            f"{local.get('long_prompt_tokens', 0):,} tokens take "
            f"{local.get('long_time_to_first_token_ms', 0) / 1000:.1f} s to the first token."
            + (f" llama.cpp (llama-cpp-python) on the same file in the same run: {llama['tokens_per_s']:.1f} tokens/s "
               f"(ratio {local['tokens_per_s'] / llama['tokens_per_s']:.2f})." if llama else
               " llama.cpp was not measured (llama-cpp-python builds from source here)."),
            "",
        ]
    section = "\n".join(lines)
    text = open(out).read() if os.path.exists(out) else "# Benchmarks\n"
    start = text.find("## Agents (`just bench-agents`)")
    if start >= 0:
        # The section ends at the next heading, or at another benchmark's marker before it.
        ends = [e for e in (text.find("\n## ", start + 1), text.find("\n<!-- ", start + 1)) if e >= 0]
        end = min(ends) if ends else -1
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    open(out, "w").write(text)
    print(section)


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "run":
        asyncio.run(run(sys.argv[2], sys.argv[3], sys.argv[4]))
    elif command == "report":
        report(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
