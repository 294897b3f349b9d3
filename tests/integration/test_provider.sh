#!/usr/bin/env bash
# morgate-provider end to end: anvil test chain (provider registered with models and bids,
# sessions opened by the consumer), the node on loopback, an OpenAI-compatible backend
# (tests/support/bin_mock_openai.c), an Anthropic one (bin_pv_mock_anthropic.c) and the built-in
# demo backend (apiType "demo", no HTTP at all), driven by
# router-core's consumer link rc_link (bin_pv_link.c: what the gateway uses) and, for what a
# well-behaved link cannot send (a prompt signed by another key, malformed bytes), by the raw
# MOR-RPC test consumer (bin_pv_consumer.c).
source "$(dirname "$0")/../support/lib.sh"
source "$(dirname "$0")/../support/chain.sh"

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
C=$T_BUILD/tests/pv_consumer
L=$T_BUILD/tests/pv_link
PROV=$T_BUILD/bin/morgate-provider
OPORT=$(free_port)
APORT=$(free_port)
PPORT=$(free_port)
MPORT=$(free_port)
EP=127.0.0.1:$PPORT

t_bg openai "$T_BUILD/tests/mock_openai" "$OPORT"
t_bg anthropic "$T_BUILD/tests/pv_mock_anthropic" "$APORT"

if ! chain_start; then
  t_fail "devnet starts"
  t_done
fi
declare -A MODEL BID
for m in chat claude drip hang fail cerr echo demo; do
  if ! chain_seed_provider "$EP" --model "pv-$m" >/dev/null; then
    t_fail "seed pv-$m"
    t_done
  fi
  MODEL[$m]=$SEED_MODEL
  BID[$m]=$SEED_BID
done
t_pass "provider registered with 8 models and bids"
UK=$CHAIN_KEY2 # the seeded user
PK=$CHAIN_KEY1 # the seeded provider

# Model ids in upper case for one entry: matched case-insensitively.
UPPER_CHAT=0x$(echo "${MODEL[chat]#0x}" | tr a-f A-F)
cat >"$T_DIR/models.json" <<JSON
{"\$schema":"./models-config-schema.json","models":[
 {"modelId":"$UPPER_CHAT","modelName":"mock-chat","apiType":"openai","apiUrl":"http://127.0.0.1:$OPORT/v1/chat/completions","apiKey":"sk-test"},
 {"modelId":"${MODEL[claude]}","modelName":"claude-mock","apiType":"claudeai","apiUrl":"http://127.0.0.1:$APORT/v1/messages","apiKey":"test-anthropic-key"},
 {"modelId":"${MODEL[drip]}","modelName":"mock-drip","apiType":"openai","apiUrl":"http://127.0.0.1:$OPORT/v1/chat/completions","concurrentSlots":1},
 {"modelId":"${MODEL[hang]}","modelName":"mock-hang","apiType":"openai","apiUrl":"http://127.0.0.1:$OPORT/v1/chat/completions"},
 {"modelId":"${MODEL[fail]}","modelName":"mock-fail","apiType":"openai","apiUrl":"http://127.0.0.1:$OPORT/v1/chat/completions"},
 {"modelId":"${MODEL[cerr]}","modelName":"claude-error","apiType":"claudeai","apiUrl":"http://127.0.0.1:$APORT/v1/messages","apiKey":"test-anthropic-key"},
 {"modelId":"${MODEL[echo]}","modelName":"mock-echo","apiType":"openai","apiUrl":"http://127.0.0.1:$OPORT/v1/chat/completions"},
 {"modelId":"${MODEL[demo]}","modelName":"morpheus-demo","apiType":"demo","parameters":{"chunkMs":"1"}}
]}
JSON
echo pw >"$T_DIR/pass"
printf '%s\n' "$PK" | MORGATE_WALLET_PASSPHRASE=pw "$T_BUILD/bin/morgatectl" wallet import \
  --wallet "$T_DIR/wallet.key" --weak-kdf >/dev/null
cat >"$T_DIR/provider.json" <<JSON
{"listen":"127.0.0.1:$PPORT","admin_listen":"127.0.0.1:$MPORT","models_config":"models.json",
 "wallet":"wallet.key","passphrase_file":"pass","rpc":"$CHAIN_RPC","chain_id":$CHAIN_ID,
 "diamond":"$DIAMOND","mor":"$MOR","db":"provider.db","backend_timeout_ms":2500,
 "drain_timeout_ms":5000,"log_level":"debug"}
JSON

t_expect "--check validates both configs" 0 "" "$PROV" --config "$T_DIR/provider.json" --check
cp "$T_ROOT/config/models-config.example.json" "$T_DIR/models-config.json"
cp "$T_ROOT/config/provider.example.json" "$T_DIR/example.json"
t_expect "the example configs validate" 0 "" "$PROV" --config "$T_DIR/example.json" --check
printf '{"models":[{"modelId":"0x12"}]}' >"$T_DIR/badmodels.json"
sed 's/"models.json"/"badmodels.json"/' "$T_DIR/provider.json" >"$T_DIR/bad.json"
t_expect "a bad models-config is named with its field" 2 "models[0].modelId: not 0x and 64 hex digits" "$PROV" --config "$T_DIR/bad.json" --check

start_provider() {
  t_bg "provider$1" "$PROV" --config "$T_DIR/provider.json"
  PROV_PID=$T_LAST_PID
  local i
  for i in $(seq 1 100); do
    "$L" ping "$EP" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}
t_ok "provider starts" start_provider 1

t_run "$L" ping "$EP" "$SEED_PROVIDER"
if [[ $T_RC -eq 0 && $T_OUT == "pong version=morgate-provider/"* ]]; then t_pass "ping: signed pong from the provider's address"; else t_fail "ping" "$T_OUT $T_ERR"; fi

# ---- handshakes -----------------------------------------------------------------------------
handshake() { # MODELKEY -> sets PPUB
  t_run "$L" request "$EP" "$UK" "${BID[$1]}"
  [[ $T_RC -eq 0 ]] || return 1
  PPUB=$(sed -E 's/.*provider_pub=(0x[0-9a-f]+).*/\1/' <<<"$T_OUT")
  [[ $T_OUT == *"provider_addr=${SEED_PROVIDER,,}"* && $T_OUT == *"chain_id=$CHAIN_ID"* ]]
}
if handshake chat; then t_pass "session.request approved: signed reply, EIP-191 approval by the provider"; else t_fail "session.request" "$T_OUT $T_ERR"; fi

t_run "$L" request "$EP" "$UK" 0x$(printf '%064d' 7)
if [[ $T_RC -eq 1 && $T_OUT == "ERROR bid not found" ]]; then t_pass "unknown bid refused"; else t_fail "unknown bid" "$T_OUT"; fi

STAKE=$(chain_stake_for 3600 "$SEED_PRICE")
open() { chain_open_session "$UK" "$PK" "${BID[$1]}" "$STAKE"; }
SID_CHAT=$(open chat)
SID_CLAUDE=$(open claude)
SID_HANG=$(open hang)
SID_FAIL=$(open fail)
SID_CERR=$(open cerr)
SID_ECHO=$(open echo)
SID_DEMO=$(open demo)
SID_CLOSED=$(open chat)
[[ $SID_CHAT == 0x* && $SID_CLAUDE == 0x* && $SID_CLOSED == 0x* && $SID_CERR == 0x* ]] && t_pass "sessions opened on chain" || t_fail "open sessions"

printf '%s' '{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}' >"$T_DIR/stream.json"
printf '%s' '{"model":"x","messages":[{"role":"user","content":"hi"}]}' >"$T_DIR/plain.json"

# ---- full sessions ----------------------------------------------------------------------------
t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_CHAT" "$T_DIR/stream.json"
n=$(grep -c '^CHUNK ' <<<"$T_OUT")
if [[ $T_RC -eq 0 && $n -ge 5 && $(tail -1 <<<"$T_OUT") == DONE && $T_OUT == *'"object":"chat.completion.chunk"'* &&
  $T_OUT == *'"usage_from_provider":{"completion_tokens":'* ]]; then
  t_pass "openai stream: $n chunks verified, decrypted, then [DONE]"
else t_fail "openai stream" "$T_OUT" "$T_ERR"; fi

t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_CHAT" "$T_DIR/plain.json"
if [[ $T_RC -eq 0 && $(grep -c '^CHUNK ' <<<"$T_OUT") -eq 1 && $T_OUT == *'"object":"chat.completion"'* ]]; then
  t_pass "openai non-streaming: one chat.completion"
else t_fail "openai non-streaming" "$T_OUT" "$T_ERR"; fi

printf '%s' '{"model":"x","stream":true,"max_tokens":77,"stop":"END","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}' >"$T_DIR/claude.json"
t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_CLAUDE" "$T_DIR/claude.json"
if [[ $T_RC -eq 0 && $T_OUT == *'sys=be brief|max=77|stop=END|n=1|'* && $T_OUT == *'"object":"chat.completion.chunk"'* &&
  $T_OUT == *'"finish_reason":"stop"'* && $T_OUT == *'"prompt_tokens":17'* && $T_OUT == *'"completion_tokens":5'* &&
  $T_OUT == *'"usage_from_provider":{"completion_tokens":5,"prompt_tokens":17,"total_tokens":22}'* &&
  $(tail -1 <<<"$T_OUT") == DONE ]]; then
  t_pass "claudeai stream: system, max_tokens, stop mapped; chunks with object, usage, finish_reason; [DONE]"
else t_fail "claudeai stream" "$T_OUT" "$T_ERR"; fi

t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_CLAUDE" "$T_DIR/plain.json"
if [[ $T_RC -eq 0 && $T_OUT == *'"object":"chat.completion"'* && $T_OUT == *'Hello world'* ]]; then
  t_pass "claudeai non-streaming: one chat.completion"
else t_fail "claudeai non-streaming" "$T_OUT" "$T_ERR"; fi

# The built-in demo backend: no HTTP; generated words streamed as chat.completion.chunk objects
# with the prompt echoed, usage on the final chunk; the whole answer when not streaming.
printf '%s' '{"model":"x","stream":true,"messages":[{"role":"user","content":"ping the demo"}]}' >"$T_DIR/demo.json"
t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_DEMO" "$T_DIR/demo.json"
n=$(grep -c '^CHUNK ' <<<"$T_OUT")
text=$(grep '^CHUNK ' <<<"$T_OUT" | sed -E 's/^CHUNK //' | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(s.trim().split("\n").map(l=>{const c=JSON.parse(l).choices[0];return (c.delta&&c.delta.content)||""}).join("")))')
if [[ $T_RC -eq 0 && $n -ge 20 && $(tail -1 <<<"$T_OUT") == DONE && $T_OUT == *'"model":"morpheus-demo"'* &&
  $text == "You said: ping the demo. This answer came from the morgate-provider demo backend"* &&
  $(grep '^CHUNK ' <<<"$T_OUT" | tail -1) == *'"finish_reason":"stop"'*'"usage":{"completion_tokens":'$((n - 1))* &&
  $T_OUT == *'"usage_from_provider":{"completion_tokens":'$((n - 1))* ]]; then
  t_pass "demo backend stream: $n chunks, prompt echoed, usage on the final chunk, [DONE]"
else t_fail "demo backend stream" "$T_OUT" "$T_ERR"; fi
t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_DEMO" "$T_DIR/plain.json"
if [[ $T_RC -eq 0 && $(grep -c '^CHUNK ' <<<"$T_OUT") -eq 1 && $T_OUT == *'"object":"chat.completion"'* &&
  $T_OUT == *'"content":"You said: hi. This answer came from'* ]]; then
  t_pass "demo backend non-streaming: one chat.completion"
else t_fail "demo backend non-streaming" "$T_OUT" "$T_ERR"; fi

# Every escaping trap of §2.3 in the prompt text: the signature covers Go's re-serialization.
# The echo backend answers with the body it received: the text must arrive intact (invalid
# UTF-8 as U+FFFD, which is what a Go consumer's json.Marshal sends).
printf '{"model":"x","messages":[{"role":"user","content":"<b> & </b> \xe2\x80\xa8 \xe2\x80\xa9 \xff\xfe bad \xc3 tab\\t \\u0001 \\\\ \\" caf\xc3\xa9 /"}]}' >"$T_DIR/traps.json"
t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_ECHO" "$T_DIR/traps.json"
want=$(printf '<b> & </b> \xe2\x80\xa8 \xe2\x80\xa9 \xef\xbf\xbd\xef\xbf\xbd bad \xef\xbf\xbd tab')
if [[ $T_RC -eq 0 && $T_OUT == *"$want"* && $T_OUT == *"$(printf 'caf\xc3\xa9 /')"* && $T_OUT == *'"model":"mock-echo"'* ]]; then
  t_pass "prompt with < > & U+2028 U+2029 and invalid UTF-8: signature verified, backend got the text"
else t_fail "escaping traps" "$T_OUT" "$T_ERR"; fi

t_run "$C" prompt "$EP" "$UK" "$PPUB" "$SID_CHAT" "$T_DIR/stream.json" --half-close 1
if [[ $T_RC -eq 0 && $(tail -1 <<<"$T_OUT") == DONE ]]; then t_pass "a consumer that half-closes after its request still gets the whole stream"; else t_fail "half-close" "$T_OUT" "$T_ERR"; fi

# ---- refusals -----------------------------------------------------------------------------
printf '%s' '{"id":"q1","method":"session.nope","params":{}}' >"$T_DIR/unknown.json"
t_run "$C" raw "$EP" "$T_DIR/unknown.json"
if [[ $T_OUT == '{"id":"q1","result":null,"error":{"message":"unknown method: unknown method: session.nope","code":400,"data":{"timestamp":'*',"signature":"0x00"}}}'* ]]; then
  t_pass "unknown method: unsigned error in the reference's shape"
else t_fail "unknown method" "$T_OUT"; fi
printf '%s' '{"id":"q2","method":"session.prompt","params":{"sessionid":1}}' >"$T_DIR/badparams.json"
t_run "$C" raw "$EP" "$T_DIR/badparams.json"
if [[ $T_OUT == *'"message":"request validation failed: '* ]]; then t_pass "malformed params: validation error"; else t_fail "malformed params" "$T_OUT"; fi
printf 'nonsense' >"$T_DIR/garbage.json"
t_run "$C" raw "$EP" "$T_DIR/garbage.json"
if [[ $T_OUT == *'"message":"failed to unmarshal request: '* ]]; then t_pass "garbage: unmarshal error, no crash"; else t_fail "garbage" "$T_OUT"; fi

t_run "$C" prompt "$EP" "$UK" "$PPUB" "$SID_CHAT" "$T_DIR/stream.json" --sign-key "$CHAIN_KEY3"
if [[ $T_RC -eq 1 && $T_OUT == "ERROR invalid signature" ]]; then t_pass "prompt signed by the wrong key refused"; else t_fail "wrong key" "$T_OUT $T_ERR"; fi

t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_CHAT" "$T_DIR/stream.json" --ts $(( $(date +%s%3N) + 86400000 ))
if [[ $T_RC -eq 1 && $T_OUT == "ERROR session expired" ]]; then t_pass "expired session refused (endsAt*1000 < timestamp)"; else t_fail "expired" "$T_OUT $T_ERR"; fi

# a session in use is read from the chain at most every 2 s: served from the cache, then refused
# once it is closed on chain and the cached copy has aged out
t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_CLOSED" "$T_DIR/stream.json"
[[ $T_RC -eq 0 && $(tail -1 <<<"$T_OUT") == DONE ]] && t_pass "a session about to be closed serves a prompt" || t_fail "before close" "$T_OUT $T_ERR"
chain_close_session "$UK" "$PK" "$SID_CLOSED" >/dev/null 2>&1
sleep 2.1
t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_CLOSED" "$T_DIR/stream.json"
if [[ $T_RC -eq 1 && $T_OUT == "ERROR session closed" ]]; then t_pass "closed session refused (2 s after its close)"; else t_fail "closed" "$T_OUT $T_ERR"; fi

t_run "$L" prompt "$EP" "$UK" "$PPUB" 0x$(printf '%064d' 5) "$T_DIR/stream.json"
if [[ $T_RC -eq 1 && $T_OUT == "ERROR session not found" ]]; then t_pass "unknown session refused"; else t_fail "unknown session" "$T_OUT $T_ERR"; fi

# ---- backend failures -----------------------------------------------------------------------
t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_FAIL" "$T_DIR/stream.json"
if [[ $T_RC -eq 1 && $(grep -c '^CHUNK ' <<<"$T_OUT") -eq 2 && $(tail -1 <<<"$T_OUT") == "ERROR failed to prompt: "* ]]; then
  t_pass "backend failing mid-stream: 2 chunks then an error, no [DONE]"
else t_fail "mid-stream failure" "$T_OUT" "$T_ERR"; fi

t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_CERR" "$T_DIR/stream.json"
if [[ $T_RC -eq 1 && $(tail -1 <<<"$T_OUT") == 'ERROR signed {"providerModelError":{"error":'*overloaded_error* ]]; then
  t_pass "anthropic error event: signed, encrypted providerModelError"
else t_fail "anthropic error event" "$T_OUT" "$T_ERR"; fi

t0=$SECONDS
t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_HANG" "$T_DIR/stream.json"
if [[ $T_RC -eq 1 && $T_OUT == "ERROR failed to prompt: backend timed out"* && $((SECONDS - t0)) -le 8 ]]; then
  t_pass "hanging backend bounded by backend_timeout_ms"
else t_fail "hanging backend" "$T_OUT" "$T_ERR"; fi

# ---- consumer disconnect, capacity ------------------------------------------------------------
handshake drip >/dev/null
SID_DRIP=$(open drip)
before=$(curl -s "http://127.0.0.1:$OPORT/stats" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).cancelled))')
t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_DRIP" "$T_DIR/stream.json" --stop-after 1
cancelled=$before
for i in $(seq 1 40); do
  cancelled=$(curl -s "http://127.0.0.1:$OPORT/stats" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).cancelled))')
  ((cancelled > before)) && break
  sleep 0.1
done
if [[ $T_RC -eq 0 && $T_OUT == *STOPPED && $cancelled -gt $before ]]; then
  t_pass "consumer disconnect cancels the backend call"
else t_fail "consumer disconnect" "$T_OUT" "cancelled $before -> $cancelled"; fi

t_run "$L" request "$EP" "$UK" "${BID[drip]}"
if [[ $T_RC -eq 1 && $T_OUT == "ERROR no capacity" ]]; then t_pass "concurrentSlots 1: second session refused with 'no capacity'"; else t_fail "capacity" "$T_OUT $T_ERR"; fi

# ---- report -----------------------------------------------------------------------------------
# a session of our bid that never had a prompt still gets a receipt (zero figures), so its user
# can close it without a dispute (§3.7)
SID_IDLE=$(open chat)
t_run "$L" report "$EP" "$UK" "$PPUB" "$SID_IDLE"
if [[ $T_RC -eq 0 && $T_OUT =~ tps=0\ ttft=0\ in=0\ out=0\ chain=$CHAIN_ID ]]; then
  t_pass "session.report on a never-prompted session: zero-figure receipt"
else t_fail "report idle" "$T_OUT $T_ERR"; fi
t_run "$L" report "$EP" "$UK" "$PPUB" 0x$(printf '%064d' 5)
[[ $T_RC -eq 1 && $T_OUT == "ERROR session not found" ]] && t_pass "session.report on an unknown session: session not found" || t_fail "report unknown" "$T_OUT $T_ERR"
t_run "$L" report "$EP" "$UK" "$PPUB" "$SID_CLAUDE"
if [[ $T_RC -eq 0 && $T_OUT =~ tps=[0-9]+\ ttft=[0-9]+\ in=34\ out=10\ chain=$CHAIN_ID ]]; then
  t_pass "session.report: signed receipt with measured stats ($T_OUT)"
else t_fail "report" "$T_OUT $T_ERR"; fi

t_run curl -s "http://127.0.0.1:$MPORT/metrics"
if [[ $T_OUT == *'morgate_provider_requests_total{method="session.prompt"}'* && $T_OUT != *sk-test* ]]; then t_pass "/metrics"; else t_fail "/metrics" "$T_OUT"; fi
t_run curl -s "http://127.0.0.1:$MPORT/healthz"
[[ $T_OUT == ok ]] && t_pass "/healthz" || t_fail "/healthz" "$T_OUT"
if grep -q 'sk-test\|test-anthropic-key\|pw' "$T_DIR/provider1.err" 2>/dev/null && grep -qE 'sk-test|test-anthropic-key' "$T_DIR/provider1.err"; then
  t_fail "logs carry no API key"
else t_pass "logs carry no API key"; fi

# ---- restart between handshake and prompt ---------------------------------------------------
handshake chat >/dev/null
SID_R=$(open chat)
kill -TERM "$PROV_PID"
wait "$PROV_PID" 2>/dev/null
rc=$?
[[ $rc -eq 0 ]] && grep -q drained "$T_DIR/provider1.err" && t_pass "SIGTERM drains and exits 0" || t_fail "SIGTERM" "rc $rc"
t_ok "provider restarts" start_provider 2
t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID_R" "$T_DIR/stream.json"
if [[ $T_RC -eq 0 && $(tail -1 <<<"$T_OUT") == DONE ]]; then t_pass "session opened before a restart is served (user key persisted)"; else t_fail "restart" "$T_OUT $T_ERR"; fi

t_run "$L" report "$EP" "$UK" "$PPUB" "$SID_CLAUDE"
if [[ $T_RC -eq 0 && $T_OUT =~ in=34\ out=10 ]]; then t_pass "session.report after a restart: statistics persisted"; else t_fail "report after restart" "$T_OUT $T_ERR"; fi

t_done
