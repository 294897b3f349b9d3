// The official openai npm client (pinned in package.json) through morgate's marketplace path:
// gateway -> on-chain session -> encrypted link -> morgate-provider -> mock backend (mock-chat).
// Usage: node openai_market.mjs BASE_URL API_KEY MODEL MODEL_ID
// Prints one "PASS desc" or "FAIL desc: why" line per check; test_market_basic.sh turns them into
// TAP. Every call uses maxRetries 0 so an error surfaces as the client reports it.
import OpenAI from "openai";

const [baseURL, apiKey, model, modelId] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
const check = async (desc, fn) => {
  try {
    const why = await fn();
    console.log(why ? `FAIL ${desc}: ${why}` : `PASS ${desc}`);
  } catch (e) {
    console.log(`FAIL ${desc}: threw ${e && e.constructor.name}: ${e && e.message}`);
  }
};

await check("non-streaming chat completion over the marketplace", async () => {
  const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] });
  if (r.choices?.[0]?.message?.content !== "hello from the mock") return `content ${JSON.stringify(r.choices)}`;
  if (!r.usage || !(r.usage.total_tokens > 0)) return `usage ${JSON.stringify(r.usage)}`;
});

await check("streaming chat completion over the marketplace", async () => {
  const stream = await client.chat.completions.create({
    model, stream: true, stream_options: { include_usage: true },
    messages: [{ role: "user", content: "hi" }],
  });
  let text = "", chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (c.choices?.[0]?.delta?.content) text += c.choices[0].delta.content;
  }
  if (text !== "w0 w1 w2 w3 w4 ") return `text '${text}' in ${chunks} chunks`;
});

await check("models.list: the on-chain model with its morpheus object", async () => {
  const all = [];
  for await (const m of client.models.list()) all.push(m);
  const m = all.find((x) => x.id === model);
  if (!m) return `ids ${all.map((x) => x.id)}`;
  const mp = m.morpheus;
  if (!mp || String(mp.model_id).toLowerCase() !== modelId.toLowerCase()) return `morpheus ${JSON.stringify(mp)}`;
  if (!Array.isArray(mp.tags) || !mp.tags.includes("llm")) return `tags ${JSON.stringify(mp.tags)}`;
  if (!(mp.active_bids >= 1)) return `active_bids ${mp.active_bids}`;
});

await check("an unknown model is a NotFoundError (404)", async () => {
  try {
    await client.chat.completions.create({ model: "no-such-model-on-chain", messages: [] });
  } catch (e) {
    return e instanceof OpenAI.NotFoundError ? undefined : `got ${e.constructor.name} ${e.status}`;
  }
  return "no error";
});
