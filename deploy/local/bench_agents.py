"""`just bench-agents`: what the platform adds to a turn, against an OpenAI-compatible mock that
answers at once, over HTTP to the release binary.

  bench_agents.py run BASE TOKEN MOCK_PORT  serve the mock there, build a 10,000-chunk collection,
                                           measure; prints one JSON object
  bench_agents.py report JSON LOCAL OUT  write the section of docs/benchmarks.md

No dependency beyond the standard library: the mock and the client speak HTTP/1.1 over asyncio
streams, so the client can note the moment the mock writes the model's first token and the moment
the platform's stream delivers it on one clock (both in this process).
"""

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time

DIMS = 8
# The moment the mock wrote the first token of each streamed answer, by a marker in the question.
FIRST_TOKEN_AT = {}


def chunk(delta, finish=None):
    return {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": "mock",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def handle(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
        body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))) or b"{}")
        if path.endswith("/embeddings"):
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [{"object": "embedding", "index": i,
                     "embedding": [((hash(t) >> (4 * d)) % 97) / 97.0 + 0.01 for d in range(DIMS)]}
                    for i, t in enumerate(inputs)]
            payload = json.dumps({"object": "list", "data": data, "model": body.get("model"),
                                  "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                         b"connection: close\r\n\r\n" % len(payload) + payload)
        else:
            question = body["messages"][-1]["content"]
            marker = question.split("#", 1)[1] if "#" in question else None
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
            if marker:
                # A model that thinks a little before its first token, so the platform's part of
                # the delay is what is left once that is taken away.
                await writer.drain()
                await asyncio.sleep(0.02)
            for i, piece in enumerate(["The ", "answer ", "is ", "42."]):
                writer.write(b"data: " + json.dumps(chunk({"content": piece})).encode() + b"\n\n")
                if i == 0:
                    await writer.drain()
                    if marker:
                        FIRST_TOKEN_AT[marker] = time.perf_counter()
            writer.write(b"data: " + json.dumps(chunk({}, "stop")).encode() + b"\n\n")
            usage = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
                     "model": "mock", "choices": [],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}}
            writer.write(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n")
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def request(base, method, path, token, body=None, on_bytes=None):
    """One HTTP/1.1 request on its own connection; answers (status, body bytes)."""
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
    status = int(received.split(b" ", 2)[1])
    return status, received.split(b"\r\n\r\n", 1)[1]


def body_json(raw):
    return json.loads(raw)


async def setup(base, token, collection=None):
    agent = {"name": "Bench", "slug": f"bench-{int(time.time() * 1000)}",
             "model": {"provider": "openai", "name": "mock"}, "max_tokens": 64}
    if collection:
        agent.update({"collections": [collection], "retrieval": {"top_k": 6, "mode": "hybrid"}})
    status, raw = await request(base, "POST", "/v1/agents", token, agent)
    assert status == 201, raw
    agent_id = body_json(raw)["id"]
    conversations = []
    for _ in range(32):
        status, raw = await request(base, "POST", f"/v1/agents/{agent_id}/conversations", token, {})
        assert status == 201, raw
        conversations.append(body_json(raw)["id"])
    return conversations


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


async def open_loop(base, token, conversations, rate, seconds):
    """Turns at `rate` per second whatever the answers' pace, round robin over the conversations."""
    latencies, errors = [], 0
    statuses = {}
    start = time.perf_counter()
    total = int(rate * seconds)

    async def turn(i):
        nonlocal errors
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        sent = time.perf_counter()
        try:
            status, _ = await request(base, "POST", f"/v1/conversations/{conversations[i % len(conversations)]}/messages",
                                      token, {"content": f"Question {i} about rockets and fuel?"})
        except OSError:
            status = 0
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            latencies.append((time.perf_counter() - sent) * 1000)
        else:
            errors += 1

    await asyncio.gather(*(turn(i) for i in range(total)))
    return {"rate": rate, "turns": total, "errors": errors, "statuses": statuses,
            "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99)}


async def sequential(base, token, conversations, n):
    """Turns one at a time: the platform's cost per turn with nothing queued behind it."""
    latencies = []
    for i in range(n):
        sent = time.perf_counter()
        status, raw = await request(base, "POST", f"/v1/conversations/{conversations[i % len(conversations)]}/messages",
                                    token, {"content": f"Question {i} about rockets and fuel?"})
        assert status == 200, raw
        latencies.append((time.perf_counter() - sent) * 1000)
    return {"n": n, "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99)}


async def first_token_delays(base, token, conversation, n):
    delays = []
    for i in range(n):
        marker = f"m{i}-{time.time_ns()}"
        seen = {}

        def on_bytes(received):
            if "at" not in seen and b"event: message.delta" in received:
                seen["at"] = time.perf_counter()

        status, _ = await request(base, "POST", f"/v1/conversations/{conversation}/messages", token,
                                  {"content": f"Stream this #{marker}", "stream": True}, on_bytes)
        if status == 200 and "at" in seen and marker in FIRST_TOKEN_AT:
            delays.append((seen["at"] - FIRST_TOKEN_AT[marker]) * 1000)
    return {"n": len(delays), "p50_ms": pct(delays, 0.5), "p99_ms": pct(delays, 0.99)}


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
    psql(os.environ["DATABASE_OWNER_URL"], "ANALYZE chunks")
    return collection


async def run(base, token, mock_port):
    server = await asyncio.start_server(handle, "127.0.0.1", int(mock_port))
    async with server:
        collection = await collection_of_10k(base, token)
        results = {}
        plain = await setup(base, token)
        # Warm up connections, caches and the planner.
        await open_loop(base, token, plain, 50, 2)
        results["sse_first_token"] = await first_token_delays(base, token, (await setup(base, token))[0], 200)
        for name, conversations in [("no_retrieval", plain), ("retrieval", await setup(base, token, collection))]:
            results[f"{name}_sequential"] = await sequential(base, token, conversations, 100)
            steps = []
            for rate in (100, 200, 400):
                fresh = conversations if rate == 100 else await setup(base, token, collection if name == "retrieval" else None)
                step = await open_loop(base, token, fresh, rate, 15 if rate == 100 else 8)
                steps.append(step)
                if step["errors"]:
                    break
            results[name] = steps
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
        "model and the embedder are a mock OpenAI-compatible server that answers at once (its own time is",
        "well under a millisecond), so the latencies are the platform's own work per turn: authenticating,",
        "committing the question and the run, loading the conversation, retrieving (over 10,000 chunks where",
        "said), calling the model through the real adapter, publishing the events to Redis, storing the",
        "answer, and following the run's events to its end. Open loop: turns are sent at the rate whatever",
        "the answers' pace, round robin over 32 conversations (each conversation's history grows).",
        "",
        "| turns | rate (turns/s) | sent | errors | p50 (ms) | p99 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    held = {}
    for name in ("no_retrieval", "retrieval"):
        for step in r[name]:
            label = "without retrieval" if name == "no_retrieval" else "with retrieval (10,000 chunks)"
            lines.append(f"| {label} | {step['rate']} | {step['turns']} | {step['errors']} | "
                         f"{step['p50_ms']:.1f} | {step['p99_ms']:.1f} |" if step["p50_ms"] is not None else
                         f"| {label} | {step['rate']} | {step['turns']} | {step['errors']} | – | – |")
            if not step["errors"]:
                held[name] = step["rate"]
    sse = r["sse_first_token"]
    one = [r.get(f"{k}_sequential") for k in ("no_retrieval", "retrieval")]
    if all(one):
        lines += [
            "",
            f"One turn at a time (100 turns, nothing queued): p50 {one[0]['p50_ms']:.1f} ms, p99 "
            f"{one[0]['p99_ms']:.1f} ms without retrieval; p50 {one[1]['p50_ms']:.1f} ms, p99 "
            f"{one[1]['p99_ms']:.1f} ms with it.",
        ]
    lines += [
        "",
        f"Highest rate held without an error (of the rates tried): {held.get('no_retrieval', 'below 100')} "
        f"turns/s without retrieval, {held.get('retrieval', 'below 100')} with it. Errors are 409 "
        "`answer_in_progress`: a conversation's next turn arrived while its previous answer was being "
        "written. Goals: p99 under 5 ms without retrieval and under 20 ms with it at 100 turns/s"
        + (" (met)." if r["no_retrieval"][0]["p99_ms"] and r["no_retrieval"][0]["p99_ms"] < 5
           and r["retrieval"][0]["p99_ms"] and r["retrieval"][0]["p99_ms"] < 20 else
           ": **not met**. On 2 cores the client, the mock (one Python process), PostgreSQL and "
           "Redis share the CPU with the server, and open-loop figures vary by 2x from run to run "
           "here; where the server's own time goes is not profiled yet."),
        "",
        f"Delay between the model's first token and the client's first byte of it over the run's event "
        f"stream ({sse['n']} streamed turns, one at a time; the mock and the client share one clock): "
        f"p50 {sse['p50_ms']:.2f} ms, p99 {sse['p99_ms']:.2f} ms (goal: under 1 ms at p99"
        + (", met)." if sse["p99_ms"] < 1 else ", not met at p99)."),
        "",
    ]
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
            "count: about +20%). A long prompt is still slow: 1,763 tokens take about 24 s to the first "
            "token (prompt reading at 70-90 tokens/s)."
            + (f" llama.cpp (llama-cpp-python) on the same file in the same run: {llama['tokens_per_s']:.1f} tokens/s "
               f"(ratio {local['tokens_per_s'] / llama['tokens_per_s']:.2f})." if llama else
               " llama.cpp was not measured (llama-cpp-python builds from source here)."),
            "",
        ]
    section = "\n".join(lines)
    text = open(out).read() if os.path.exists(out) else "# Benchmarks\n"
    start = text.find("## Agents (`just bench-agents`)")
    if start >= 0:
        end = text.find("\n## ", start + 1)
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
