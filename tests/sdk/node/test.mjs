// The platform's OpenAI-compatible routes as the official Node SDK sees them: the checks of
// tests/sdk/python/test_openai_sdk.py, through the other SDK people use (which, unlike Python's,
// decodes embeddings as base64 unless told otherwise, whatever the server sent).
// Env: BASE_URL, API_KEY, PLATFORM_KEY, TENANT_ID, MOCK_LOG; SDK_DRY_RUN=1 as in the Python test.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const BASE_URL = process.env.BASE_URL.replace(/\/$/, "");
const API_KEY = process.env.API_KEY;
const MOCK_LOG = process.env.MOCK_LOG;
const DRY_RUN = process.env.SDK_DRY_RUN === "1";
const AGENT = "sdk-agent";
const SPACE = "sdk-mock";

const client = new OpenAI({ baseURL: `${BASE_URL}/v1`, apiKey: API_KEY, maxRetries: 0 });

const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city now.",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
const WEATHER_QUESTION = { role: "user", content: "What is the weather in Paris?" };
const WEATHER_CALL = {
  id: "call_weather_1",
  type: "function",
  function: { name: "get_weather", arguments: '{"city":"Paris"}' },
};
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// What the mock reported since a mark: the platform must pass exactly that on.
class MockLog {
  constructor() {
    this.start = MockLog.entries().length;
  }
  static entries() {
    let text = "";
    try {
      text = readFileSync(MOCK_LOG, "utf8");
    } catch (e) {
      if (e.code !== "ENOENT") throw e;
    }
    return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  }
  chat() {
    const entries = MockLog.entries().slice(this.start).filter((e) => e.path.endsWith("/chat/completions"));
    assert.ok(entries.length, "the mock model was not called");
    return entries;
  }
  usage() {
    const sum = (k) => this.chat().reduce((n, e) => n + e.usage[k], 0);
    return { prompt_tokens: sum("prompt_tokens"), completion_tokens: sum("completion_tokens") };
  }
  content() {
    return this.chat().map((e) => e.content).join("");
  }
  lastRequest() {
    return this.chat().at(-1).request;
  }
}

// The mock's vectors (tests/sdk/mock_model.py `vector`), which the platform passes on.
function mockVector(text) {
  const raw = [...createHash("sha256").update(text).digest().subarray(0, 8)].map((b) => (b - 127.5) / 127.5);
  const norm = Math.hypot(...raw) || 1;
  return raw.map((x) => x / norm);
}

async function http(method, path, token, body) {
  const response = await fetch(BASE_URL + path, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return [response.status, text ? JSON.parse(text) : null];
}

function assertUsage(usage, log) {
  const reported = log.usage();
  assert.ok(usage, "no usage");
  assert.equal(usage.prompt_tokens, reported.prompt_tokens);
  assert.equal(usage.completion_tokens, reported.completion_tokens);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
}

// OpenAI's error shape, which the SDK reads into typed errors and their fields.
async function expectError(call, type, status, { kind, code } = {}) {
  try {
    await call();
  } catch (e) {
    if (!(e instanceof type)) throw e;
    assert.equal(e.status, status);
    assert.ok(e.error && typeof e.error.message === "string" && e.error.message, JSON.stringify(e.error));
    for (const field of ["type", "param", "code"]) assert.ok(field in e.error, JSON.stringify(e.error));
    if (kind !== undefined) assert.equal(e.type, kind, JSON.stringify(e.error));
    if (code !== undefined) assert.equal(e.code, code, JSON.stringify(e.error));
    return e;
  }
  assert.fail(`expected ${type.name}`);
}

function completionId(id) {
  assert.match(id, /^chatcmpl-/);
  assert.match(id.slice("chatcmpl-".length), UUID);
  return id.slice("chatcmpl-".length);
}

function streamedContent(chunks) {
  return chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
}

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

const tests = {
  async modelsList() {
    const models = (await client.models.list()).data;
    assert.ok(models.some((m) => m.id === AGENT), JSON.stringify(models));
    for (const m of models) {
      assert.equal(m.object, "model");
      assert.equal(typeof m.id, "string");
      assert.ok(Number.isInteger(m.created), JSON.stringify(m));
      assert.equal(typeof m.owned_by, "string");
    }
  },

  async chatCompletion() {
    const log = new MockLog();
    const completion = await client.chat.completions.create({
      model: AGENT,
      messages: [{ role: "user", content: "Hello" }],
    });
    assert.equal(completion.object, "chat.completion");
    const [choice] = completion.choices;
    assert.equal(choice.message.role, "assistant");
    assert.equal(choice.message.content, log.content());
    assert.equal(choice.message.content, "Echo: Hello");
    assert.equal(choice.finish_reason, "stop");
    assertUsage(completion.usage, log);
    if (DRY_RUN) return;
    const runId = completionId(completion.id);
    assert.ok(Array.isArray(completion.citations), JSON.stringify(completion));
    const [status, run] = await http("GET", `/v1/runs/${runId}`, API_KEY);
    assert.equal(status, 200, JSON.stringify(run));
    assert.equal(run.conversation_id, null);
    assert.equal(run.message_id, null);
    assert.equal(run.status, "completed");
  },

  // Beyond the brief: a client's max_tokens reaches the model, and a cut answer says so.
  async chatCompletionMaxTokens() {
    const log = new MockLog();
    const completion = await client.chat.completions.create({
      model: AGENT,
      messages: [{ role: "user", content: "one two three four five" }],
      max_tokens: 2,
    });
    const sent = log.lastRequest();
    assert.equal(sent.max_tokens ?? sent.max_completion_tokens, 2, JSON.stringify(sent));
    assert.equal(completion.choices[0].message.content, "Echo: one ");
    assert.equal(completion.choices[0].finish_reason, "length");
    assertUsage(completion.usage, log);
  },

  async chatStreamWithUsage() {
    const log = new MockLog();
    const chunks = await collect(
      await client.chat.completions.create({
        model: AGENT,
        messages: [{ role: "user", content: "Stream me" }],
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    const ids = new Set(chunks.map((c) => c.id));
    assert.equal(ids.size, 1, [...ids].join());
    if (!DRY_RUN) completionId([...ids][0]);
    assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
    assert.equal(streamedContent(chunks), log.content());
    assert.equal(streamedContent(chunks), "Echo: Stream me");
    assert.ok(chunks.some((c) => c.choices[0]?.finish_reason === "stop"));
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assertUsage(last.usage, log);
    assert.ok(chunks.slice(0, -1).every((c) => c.usage == null), "usage before the last chunk");
  },

  async chatStreamWithoutUsage() {
    const log = new MockLog();
    const chunks = await collect(
      await client.chat.completions.create({
        model: AGENT,
        messages: [{ role: "user", content: "No usage" }],
        stream: true,
      }),
    );
    assert.ok(chunks.every((c) => c.usage == null), "usage that was not asked for");
    assert.equal(streamedContent(chunks), log.content());
    assert.equal(streamedContent(chunks), "Echo: No usage");
  },

  async toolCallRoundTrip() {
    let log = new MockLog();
    const completion = await client.chat.completions.create({
      model: AGENT,
      messages: [WEATHER_QUESTION],
      tools: [WEATHER_TOOL],
    });
    assert.deepEqual((log.lastRequest().tools ?? []).map((t) => t.function.name), ["get_weather"]);
    const [choice] = completion.choices;
    assert.equal(choice.finish_reason, "tool_calls");
    const [call] = choice.message.tool_calls;
    assert.equal(call.id, "call_weather_1");
    assert.equal(call.type, "function");
    assert.equal(call.function.name, "get_weather");
    assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
    assertUsage(completion.usage, log);

    log = new MockLog();
    const answer = await client.chat.completions.create({
      model: AGENT,
      messages: [
        WEATHER_QUESTION,
        { role: "assistant", content: null, tool_calls: [WEATHER_CALL] },
        { role: "tool", tool_call_id: "call_weather_1", content: "Sunny, 21 C" },
      ],
      tools: [WEATHER_TOOL],
    });
    const sent = log.lastRequest().messages;
    assert.equal(sent.at(-1).role, "tool", JSON.stringify(sent));
    assert.equal(sent.at(-1).tool_call_id, "call_weather_1", JSON.stringify(sent));
    assert.equal(answer.choices[0].finish_reason, "stop");
    assert.match(answer.choices[0].message.content ?? "", /Sunny/);
    assert.equal(answer.choices[0].message.content, log.content());
  },

  async toolCallStreamed() {
    const chunks = await collect(
      await client.chat.completions.create({
        model: AGENT,
        messages: [WEATHER_QUESTION],
        tools: [WEATHER_TOOL],
        stream: true,
      }),
    );
    const calls = new Map();
    for (const c of chunks) {
      for (const piece of c.choices[0]?.delta?.tool_calls ?? []) {
        const call = calls.get(piece.index) ?? { id: null, name: "", arguments: "" };
        call.id = piece.id ?? call.id;
        call.name += piece.function?.name ?? "";
        call.arguments += piece.function?.arguments ?? "";
        calls.set(piece.index, call);
      }
    }
    assert.deepEqual([...calls.keys()], [0]);
    assert.equal(calls.get(0).id, "call_weather_1");
    assert.equal(calls.get(0).name, "get_weather");
    assert.deepEqual(JSON.parse(calls.get(0).arguments), { city: "Paris" });
    assert.ok(chunks.some((c) => c.choices[0]?.finish_reason === "tool_calls"));
  },

  async badApiKey() {
    const bad = new OpenAI({ baseURL: `${BASE_URL}/v1`, apiKey: "not-a-key", maxRetries: 0 });
    await expectError(
      () => bad.chat.completions.create({ model: AGENT, messages: [{ role: "user", content: "Hello" }] }),
      OpenAI.AuthenticationError,
      401,
    );
  },

  async unknownModel() {
    await expectError(
      () => client.chat.completions.create({ model: "no-such-agent", messages: [{ role: "user", content: "Hello" }] }),
      OpenAI.NotFoundError,
      404,
      { code: "model_not_found" },
    );
  },

  async emptyMessages() {
    await expectError(
      () => client.chat.completions.create({ model: AGENT, messages: [] }),
      OpenAI.UnprocessableEntityError,
      422,
      { kind: "invalid_request_error" },
    );
  },

  async embeddings() {
    // No encoding_format: the SDK asks for base64 and decodes it, so a server that answers
    // floats regardless yields garbage here (two numbers per vector, say), not an error.
    const result = await client.embeddings.create({ model: SPACE, input: ["a", "b"] });
    assert.deepEqual(result.data.map((d) => d.index), [0, 1]);
    for (const [d, text] of result.data.map((d, i) => [d, ["a", "b"][i]])) {
      assert.equal(d.embedding.length, 8, JSON.stringify(d.embedding));
      const expected = mockVector(text);
      d.embedding.forEach((x, i) => assert.ok(Math.abs(x - expected[i]) < 1e-5, `${d.embedding} vs ${expected}`));
    }
    assert.ok(result.usage.prompt_tokens > 0, JSON.stringify(result.usage));
    const floats = await client.embeddings.create({ model: SPACE, input: "a", encoding_format: "float" });
    assert.equal(floats.data.length, 1);
    assert.equal(floats.data[0].embedding.length, 8);
  },

  async embeddingsSingleInput() {
    const result = await client.embeddings.create({ model: SPACE, input: "just one" });
    assert.equal(result.data.length, 1);
    assert.equal(result.data[0].embedding.length, 8);
  },

  async embeddingsUnknownModel() {
    await expectError(() => client.embeddings.create({ model: "no-such-space", input: "a" }), OpenAI.NotFoundError, 404);
  },

  // Last: it needs tokens already spent today.
  async quotaExceeded() {
    const platformKey = process.env.PLATFORM_KEY;
    const tenant = process.env.TENANT_ID;
    let [status, body] = await http("PATCH", `/v1/tenants/${tenant}`, platformKey, { daily_token_quota: 1 });
    assert.equal(status, 200, JSON.stringify(body));
    try {
      const e = await expectError(
        () => client.chat.completions.create({ model: AGENT, messages: [{ role: "user", content: "Hello" }] }),
        OpenAI.RateLimitError,
        429,
        { code: "quota_exceeded" },
      );
      const retryAfter = e.headers?.get?.("retry-after") ?? e.headers?.["retry-after"];
      assert.ok(retryAfter && !(/^\d+$/.test(retryAfter) && Number(retryAfter) === 0), `retry-after: ${retryAfter}`);
    } finally {
      [status, body] = await http("PATCH", `/v1/tenants/${tenant}`, platformKey, { daily_token_quota: null });
      assert.equal(status, 200, `quota not reset: ${JSON.stringify(body)}`);
    }
  },
};

// What only the platform does: the mock has no keys, validation or quotas.
const SERVER_ONLY = new Set(["badApiKey", "emptyMessages", "quotaExceeded"]);

let passed = 0;
let failed = 0;
let skipped = 0;
for (const [name, test] of Object.entries(tests)) {
  if (DRY_RUN && SERVER_ONLY.has(name)) {
    skipped += 1;
    continue;
  }
  try {
    await test();
    passed += 1;
  } catch (e) {
    failed += 1;
    console.error(`FAIL ${name}:`, e);
  }
}
console.log(`node-sdk: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exitCode = failed ? 1 : 0;
