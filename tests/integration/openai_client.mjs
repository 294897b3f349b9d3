// The official openai npm client (pinned in package.json) against a running morgate.
// Usage: node openai_client.mjs BASE_URL API_KEY
// Prints one "PASS desc" or "FAIL desc: why" line per check; test_gateway_openai.sh turns them
// into TAP. Every call uses maxRetries 0 so an error surfaces as the client reports it.
import OpenAI from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 10000 });
const check = async (desc, fn) => {
  try {
    const why = await fn();
    console.log(why ? `FAIL ${desc}: ${why}` : `PASS ${desc}`);
  } catch (e) {
    console.log(`FAIL ${desc}: threw ${e && e.constructor.name}: ${e && e.message}`);
  }
};

await check("non-streaming chat completion", async () => {
  const r = await client.chat.completions.create({ model: "mock-chat", messages: [{ role: "user", content: "hi" }] });
  if (r.choices[0].message.content !== "hello from the mock") return `content ${JSON.stringify(r.choices[0])}`;
  if (r.usage.total_tokens !== 11) return `usage ${JSON.stringify(r.usage)}`;
});

await check("streaming chat completion, usage chunk included", async () => {
  const stream = await client.chat.completions.create({
    model: "mock-chat", stream: true, stream_options: { include_usage: true },
    messages: [{ role: "user", content: "hi" }],
  });
  let text = "", usage = null, chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (c.choices[0]?.delta?.content) text += c.choices[0].delta.content;
    if (c.usage) usage = c.usage;
  }
  if (text !== "w0 w1 w2 w3 w4 ") return `text '${text}'`;
  if (!usage || usage.completion_tokens !== 5) return `usage ${JSON.stringify(usage)}`;
  if (chunks !== 6) return `${chunks} chunks`;
});

await check("streaming from the built-in demo model", async () => {
  const stream = await client.chat.completions.create({ model: "demo", stream: true, max_tokens: 5, messages: [] });
  let text = "", finish = null;
  for await (const c of stream) {
    text += c.choices[0]?.delta?.content ?? "";
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  if (!text.startsWith("Hello from")) return `text '${text}'`;
  if (finish !== "length") return `finish ${finish}`;
});

await check("stream with the request's raw response headers (x-request-id, rate limits)", async () => {
  const { data, response } = await client.chat.completions
    .create({ model: "mock-chat", messages: [] }).withResponse();
  if (!response.headers.get("x-request-id")) return "no x-request-id";
  if (response.headers.get("x-ratelimit-limit-requests") !== "1000") return `limit ${response.headers.get("x-ratelimit-limit-requests")}`;
  if (!data.id) return "no id";
});

await check("models.list", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  if (!ids.includes("mock-chat") || !ids.includes("demo")) return `ids ${ids}`;
});

await check("a bad key is an AuthenticationError (401)", async () => {
  const bad = new OpenAI({ baseURL, apiKey: "sk-mor-nope", maxRetries: 0 });
  try { await bad.chat.completions.create({ model: "mock-chat", messages: [] }); } catch (e) {
    if (!(e instanceof OpenAI.AuthenticationError)) return `got ${e.constructor.name}`;
    if (e.code !== "invalid_api_key") return `code ${e.code}`;
    return;
  }
  return "no error";
});

await check("an unknown model is a NotFoundError (404)", async () => {
  try { await client.chat.completions.create({ model: "nope", messages: [] }); } catch (e) {
    return e instanceof OpenAI.NotFoundError && e.code === "model_not_found" ? undefined : `got ${e.constructor.name} ${e.code}`;
  }
  return "no error";
});

await check("a backend failing mid-stream surfaces as an APIError in the iterator", async () => {
  const stream = await client.chat.completions.create({ model: "mock-fail", stream: true, messages: [] });
  let text = "";
  try {
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
  } catch (e) {
    if (!(e instanceof OpenAI.APIError)) return `got ${e.constructor.name}`;
    if (text !== "onetwo") return `text before the error '${text}'`;
    return;
  }
  return "no error";
});

await check("embeddings", async () => {
  const r = await client.embeddings.create({ model: "demo", input: "hi" });
  if (r.data[0].embedding.length !== 4) return JSON.stringify(r);
});
