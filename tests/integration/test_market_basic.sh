#!/usr/bin/env bash
# Marketplace routing end to end (issue 6), every component real: redis-server, anvil with the
# Morpheus test contracts, morgate-provider with the mock OpenAI backend, morgate with its wallet.
# The first request opens one session on chain and streams; later requests reuse it (curl and the
# official openai client, streaming and not); concurrent requests from several API keys each get
# only their own text; /v1/models shows the on-chain catalogue; a model without bids and an
# unknown model are refused clearly; and once the chain clock passes the session's end the gateway
# closes it with the provider's receipt (read back on chain: closed, not a dispute).
source "$(dirname "$0")/../support/lib.sh"
source "$(dirname "$0")/../support/market.sh"

mk_require
mk_base
mk_backend b1 || { t_fail "mock backend starts"; t_done; exit 1; }
mk_provider_port p1
for m in m-chat m-echo m-nobids; do
  mk_offer 1 "${MK_EP[p1]}" "$m" || { t_fail "offer $m on chain"; t_done; exit 1; }
done
# m-nobids: registered, but its only bid is deleted
chain_send "$CHAIN_KEY1" "$DIAMOND" "deleteModelBid(bytes32)" "${MK_BID[m-nobids/1]}" >/dev/null ||
  { t_fail "delete the bid of m-nobids"; t_done; exit 1; }
mk_provider_start p1 1 b1 "m-chat=mock-chat m-echo=mock-echo m-nobids=mock-chat" ||
  { t_fail "provider node starts" "$(tail -5 "$T_DIR/provider-p1.err")"; t_done; exit 1; }
t_pass "chain, redis, provider node with 3 on-chain models (one without bids)"

mk_gateway_config gw '{"aliases": {"chat": "m-chat"}}'
mk_gateway_start gw || { t_fail "gateway starts" "$(tail -5 "$T_DIR/gw-gw.err")"; t_done; exit 1; }
G=${MK_G[gw]}
if mk_wait_model gw m-chat 20; then t_pass "the on-chain catalogue reaches /v1/models"; else
  t_fail "catalogue" "$(curl -s -H "Authorization: Bearer $MK_KEY1" "$G/v1/models")" "$(tail -5 "$T_DIR/gw-gw.err")"
fi

models_json_ok() {
  curl -s -H "Authorization: Bearer $MK_KEY1" "$G/v1/models" -o "$T_DIR/models.json" &&
    node -e 'const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const m = o.data.find(x => x.id === "m-chat"); process.exit(o.object === "list" && m && m.object === "model" &&
      m.morpheus && m.morpheus.model_id === process.argv[2] && m.morpheus.active_bids === 1 &&
      m.morpheus.tags.includes("llm") && !o.data.some(x => x.id === "m-nobids") ? 0 : 1)' "$T_DIR/models.json" "${MK_MODEL_ID[m-chat]}"
}
if models_json_ok; then t_pass "/v1/models: valid JSON, m-chat with its morpheus object, m-nobids not listed"; else
  t_fail "/v1/models" "$(od -c "$T_DIR/models.json" | grep -m2 '\\0')" "$(head -c 600 "$T_DIR/models.json" | tr '\000' '@')"; fi

# ---- 1. first request opens a session, second reuses it ------------------------------------------
t_ok "no session on chain before the first request" test "$(mk_opened_count)" = 0
t0=$(t_now_ms)
mk_chat gw "$MK_KEY1" m-chat "hello" stream
cold_ms=$(($(t_now_ms) - t0))
text=$(mk_sse_text <<<"$MK_BODY")
last=$(grep '^data: ' <<<"$MK_BODY" | tail -1)
if [[ $MK_STATUS == 200 && $text == "w0 w1 w2 w3 w4 " && $last == "data: [DONE]" ]]; then
  t_pass "first request (stream) crosses chain, session and link: full answer, then [DONE] (${cold_ms} ms cold)"
else t_fail "first request" "status $MK_STATUS text '$text'" "body: ${MK_BODY:0:600}" "$(tail -5 "$T_DIR/gw-gw.err")"; fi
first=$(grep -m1 . <<<"$MK_BODY")
if [[ $first == :* ]]; then t_pass "while the session opened the stream carried an SSE comment first ('$first')"; else
  t_fail "keep-alive comment during the cold start" "first line '$first'"; fi
n=$(mk_opened_count)
SID=$(mk_user_sessions | head -1)
if [[ -n $SID && $n == 1 && $(mk_session user "$SID") == "$CHAIN_ADDR2" && $(mk_session isActive "$SID") == true &&
  $(mk_session bidId "$SID") == "${MK_BID[m-chat/1]}" ]]; then
  t_pass "one SessionOpened for the gateway's wallet, on the provider's bid, active"
else t_fail "one session opened" "SessionOpened count $n, session '$SID'"; fi

mk_chat gw "$MK_KEY2" m-chat "again"
content=$(mk_json 'o.choices[0].message.content' <<<"$MK_BODY")
if [[ $MK_STATUS == 200 && $content == "hello from the mock" ]]; then t_pass "second request (another key, not streaming) answered"; else
  t_fail "second request" "status $MK_STATUS" "${MK_BODY:0:400}"; fi
mk_chat gw "$MK_KEY1" chat "via the alias" stream
if [[ $MK_STATUS == 200 && $(mk_sse_text <<<"$MK_BODY") == "w0 w1 w2 w3 w4 " ]]; then t_pass "a config alias routes to the on-chain model"; else
  t_fail "alias" "status $MK_STATUS" "${MK_BODY:0:400}"; fi

cd "$T_ROOT" || exit 1
out=$(node tests/integration/openai_market.mjs "$G/v1" "$MK_KEY3" m-chat "${MK_MODEL_ID[m-chat]}" 2>&1)
n=0
while IFS= read -r line; do
  case $line in
  PASS\ *) t_pass "openai client: ${line#PASS }"; n=$((n + 1)) ;;
  FAIL\ *) t_fail "openai client: ${line#FAIL }"; n=$((n + 1)) ;;
  esac
done <<<"$out"
t_ok "the openai client ran every check (4)" test "$n" = 4 || echo "# $out"
t_ok "the requests reused the session: still one SessionOpened" test "$(mk_opened_count)" = 1
state=$(mk_ctl_state "$SID")
t_ok "morgatectl sessions list knows the session as open ($state)" test "$state" = open
# 1 stream + 1 plain + 1 alias + 2 from the openai client = 5 requests on the session
row_ok() {
  mk_ctl_sessions 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
    const r=JSON.parse(s).find(x=>String(x.id).toLowerCase()===process.argv[1].toLowerCase());
    process.exit(r && r.model==="m-chat" && String(r.provider).toLowerCase()===process.argv[2].toLowerCase() &&
      r.stake_wei===process.argv[3] && r.requests>=5 && r.ends_at && r.opened_at ? 0 : 1)})' "$SID" "$CHAIN_ADDR1" "$(mk_session stake "$SID")"
}
if mk_poll 5 row_ok; then t_pass "the session's record: model, provider, stake as on chain, times, 5 requests served"; else
  t_fail "session record" "$(mk_ctl_sessions 2>&1 | head -c 900)"; fi
usage_ok() {
  "$MK_CTL" --json usage --by model 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
    const r=JSON.parse(s).find(x=>x.group==="m-chat"); process.exit(r && r.requests>=5 && r.completion_tokens>0 ? 0 : 1)})'
}
if mk_poll 5 usage_ok; then t_pass "usage recorded per model in the key store (m-chat: requests and tokens)"; else
  t_fail "usage" "$("$MK_CTL" --json usage --by model 2>&1 | head -c 600)"; fi

# ---- 2. concurrent requests from several keys never see each other's text ----------------------------
# mock-echo answers with the body it received, so each answer must carry its own marker and no other.
pids=()
for r in 1 2; do
  for k in 1 2 3 4; do
    key=MK_KEY$k
    body="{\"model\":\"m-echo\",\"messages\":[{\"role\":\"user\",\"content\":\"marker-$r-$k-$RANDOM$RANDOM\"}]}"
    echo "$body" >"$T_DIR/echo-$r-$k.req"
    curl -s --max-time 40 -o "$T_DIR/echo-$r-$k.out" -w '%{http_code}' -H "Authorization: Bearer ${!key}" \
      -H 'Content-Type: application/json' -d "$body" "$G/v1/chat/completions" >"$T_DIR/echo-$r-$k.code" &
    pids+=($!)
  done
done
wait "${pids[@]}"
bad=()
for r in 1 2; do
  for k in 1 2 3 4; do
    mine=$(grep -o 'marker-[0-9]*-[0-9]*-[0-9]*' "$T_DIR/echo-$r-$k.req")
    got=$(grep -o 'marker-[0-9]*-[0-9]*-[0-9]*' "$T_DIR/echo-$r-$k.out" | sort -u | tr '\n' ' ')
    [[ $(cat "$T_DIR/echo-$r-$k.code") == 200 && $got == "$mine " ]] ||
      bad+=("key $k round $r: status $(cat "$T_DIR/echo-$r-$k.code"), markers '$got' want '$mine': $(head -c 300 "$T_DIR/echo-$r-$k.out")")
  done
done
if ((${#bad[@]} == 0)); then t_pass "8 concurrent requests from 4 keys: each answer carries only its own text"; else
  t_fail "crosstalk check" "${bad[@]}"; fi

# ---- 8. a model without bids, an unknown model ---------------------------------------------------------
mk_chat gw "$MK_KEY1" m-nobids "x"
msg=$(mk_json 'o.error.message' <<<"$MK_BODY" 2>/dev/null)
if [[ ($MK_STATUS == 404 || $MK_STATUS == 503) && $msg == *m-nobids* ]]; then
  t_pass "a model without active bids: $MK_STATUS '$msg'"
else t_fail "model without bids" "status $MK_STATUS" "${MK_BODY:0:400}"; fi
mk_chat gw "$MK_KEY1" no-such-model "x" stream
msg=$(mk_json 'o.error.message' <<<"$MK_BODY" 2>/dev/null)
code=$(mk_json 'o.error.code' <<<"$MK_BODY" 2>/dev/null)
if [[ $MK_STATUS == 404 && $code == model_not_found && $msg == *no-such-model* ]]; then
  t_pass "an unknown model: 404 model_not_found '$msg', never a substitute"
else t_fail "unknown model" "status $MK_STATUS" "${MK_BODY:0:400}"; fi

# ---- 7. near expiry: closed with the provider's receipt ----------------------------------------------
if [[ -z $SID ]]; then
  t_fail "session closed after endsAt" "no session was opened"
  t_done
  exit 1
fi
ok_before=$(mk_provider_stat successCount m-chat 1)
ends=$(mk_session endsAt "$SID")
now=$(chain_now)
chain_time_travel $((ends - now + 5)) >/dev/null
closed_check() { [[ $(mk_session closedAt "$SID") != 0 ]]; }
if mk_poll 25 closed_check; then
  ctype=$(mk_session closeoutType "$SID")
  ok_after=$(mk_provider_stat successCount m-chat 1)
  if [[ $ctype == 0 && $ok_after == $((ok_before + 1)) ]]; then
    t_pass "past endsAt the gateway closed the session with the provider's receipt (closeoutType 0, successCount $ok_before -> $ok_after)"
  else t_fail "close was a dispute" "closeoutType $ctype, successCount $ok_before -> $ok_after"; fi
else
  t_fail "session closed after endsAt" "closedAt still 0 25 s after the chain passed endsAt" "$(grep -i 'clos' "$T_DIR/gw-gw.err" | tail -5)"
fi
state_closed() { [[ $(mk_ctl_state "$SID") == closed ]]; }
t_ok "morgatectl sessions list shows it closed" mk_poll 5 state_closed

if grep -qE "$MK_KEY1|$MK_KEY2|gw-pass|${CHAIN_KEY2#0x}" "$T_DIR"/gw-gw.err; then t_fail "gateway log carries a secret"; else
  t_pass "gateway log carries no API key, passphrase or wallet key"; fi

# SIGTERM with sessions in the pool: a clean exit (0), and no sanitizer report in asan builds.
kill -TERM "${MK_GWPID[gw]}"
wait "${MK_GWPID[gw]}"
rc=$?
if [[ $rc == 0 ]] && ! grep -qE 'Sanitizer|runtime error:' "$T_DIR/gw-gw.err"; then t_pass "the gateway stops cleanly on SIGTERM"; else
  t_fail "gateway stop" "exit $rc" "$(grep -A8 -E 'Sanitizer|runtime error:' "$T_DIR/gw-gw.err" | head -20)"; fi
t_done
