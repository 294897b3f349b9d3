#!/usr/bin/env bash
# Marketplace failover end to end (issue 6): two real morgate-provider nodes (distinct provider
# accounts, each with its own mock backend) bid on the same on-chain models. Whichever provider
# the gateway picks is killed: before the first byte the client still gets a normal answer from
# the other one (a fresh session with it, within the deadline); mid-stream the stream ends with a
# clean SSE error event and then [DONE].
source "$(dirname "$0")/../support/lib.sh"
source "$(dirname "$0")/../support/market.sh"

mk_require
mk_base
mk_backend bA && mk_backend bB || { t_fail "mock backends start"; t_done; exit 1; }
mk_provider_port pA
mk_provider_port pB
for m in m-slow m-drip m-fail; do
  mk_offer 1 "${MK_EP[pA]}" "$m" && mk_offer 3 "${MK_EP[pB]}" "$m" || { t_fail "offers for $m"; t_done; exit 1; }
done
mk_provider_start pA 1 bA "m-slow=mock-slow m-drip=mock-drip m-fail=mock-fail" &&
  mk_provider_start pB 3 bB "m-slow=mock-slow m-drip=mock-drip m-fail=mock-fail" ||
  { t_fail "provider nodes start"; t_done; exit 1; }
t_pass "two provider nodes (accounts 1 and 3) bid on m-slow, m-drip and m-fail"
mk_gateway_config gw
mk_gateway_start gw || { t_fail "gateway starts" "$(tail -5 "$T_DIR/gw-gw.err")"; t_done; exit 1; }
G=${MK_G[gw]}
mk_wait_model gw m-slow 20 && mk_wait_model gw m-drip 10 || { t_fail "catalogue lists m-slow and m-drip"; t_done; exit 1; }

# which_backend: prints bA or bB once one of them holds a request open (5 s), else fails
open_on() { [[ $(mk_backend_stat "$1" open) -ge 1 ]]; }
which_backend() {
  local i
  for ((i = 0; i < 300; i++)); do
    open_on bA && { echo bA; return 0; }
    open_on bB && { echo bB; return 0; }
    sleep 0.1
  done
  return 1
}
other() { [[ $1 == bA ]] && echo bB || echo bA; }

# ends_with_error FILE: SSE content chunks, then one JSON error event, then [DONE] as the last event
ends_with_error() {
  local events n_content err_line total
  events=$(grep '^data: ' "$1")
  n_content=$(grep -c '"content":"' <<<"$events")
  err_line=$(grep -n '^data: {"error"' <<<"$events" | head -1 | cut -d: -f1)
  total=$(grep -c '' <<<"$events")
  ERR_DETAIL="$n_content chunks, error event at line '$err_line' of $total"
  [[ $n_content -ge 1 && -n $err_line && $err_line == $((total - 1)) && $(tail -1 <<<"$events") == "data: [DONE]" ]] &&
    mk_json 'o.error.message' <<<"$(sed -n "${err_line}p" <<<"$events" | cut -c7-)" >/dev/null
}

# ---- the backend fails mid-stream (the provider reports it after two chunks) ----------------------
curl -s -N --max-time 40 -o "$T_DIR/s4b.out" -w '%{http_code}' -H "Authorization: Bearer $MK_KEY3" \
  -H 'Content-Type: application/json' -d '{"model":"m-fail","stream":true,"messages":[{"role":"user","content":"x"}]}' \
  "$G/v1/chat/completions" >"$T_DIR/s4b.code"
if [[ $(cat "$T_DIR/s4b.code") == 200 ]] && ends_with_error "$T_DIR/s4b.out" && [[ $(mk_sse_text <"$T_DIR/s4b.out") == onetwo ]]; then
  t_pass "backend cut after two chunks: the client gets them, a JSON error event, then [DONE]"
else t_fail "backend failure mid-stream" "status $(cat "$T_DIR/s4b.code"): $ERR_DETAIL" "$(tail -c 600 "$T_DIR/s4b.out")"; fi

# ---- 3. provider killed before the first byte -> failover ---------------------------------------
# mock-slow sends headers at once, then 2.5 s of silence: the node holds the request without a
# chunk. The node that has it is SIGKILLed; the gateway must retry on the other provider.
body='{"model":"m-slow","stream":true,"messages":[{"role":"user","content":"failover"}]}'
curl -s -N --max-time 40 -o "$T_DIR/s3.out" -w '%{http_code}' -H "Authorization: Bearer $MK_KEY1" \
  -H 'Content-Type: application/json' -d "$body" "$G/v1/chat/completions" >"$T_DIR/s3.code" &
cpid=$!
if victim=$(which_backend); then
  survivor=$(other "$victim")
  before=$(mk_backend_stat "$survivor" requests)
  mk_provider_kill "p${victim#b}"
  wait "$cpid"
  text=$(mk_sse_text <"$T_DIR/s3.out")
  last=$(grep '^data: ' "$T_DIR/s3.out" | tail -1)
  if [[ $(cat "$T_DIR/s3.code") == 200 && $text == late && $last == "data: [DONE]" ]] &&
    ! grep -q '"error"' "$T_DIR/s3.out"; then
    t_pass "provider ${victim#b} killed before the first byte: a normal answer from the other provider"
  else t_fail "failover before the first byte" "status $(cat "$T_DIR/s3.code") text '$text'" "$(head -c 600 "$T_DIR/s3.out")" \
    "$(grep -iE 'fail|error|warn' "$T_DIR/gw-gw.err" | tail -5)"; fi
  t_ok "the survivor's backend served it" test "$(mk_backend_stat "$survivor" requests)" -gt "$before"
else
  wait "$cpid"
  t_fail "the request reached a provider's backend within 30 s" "$(head -c 400 "$T_DIR/s3.out")" "$(tail -5 "$T_DIR/gw-gw.err")"
  survivor=""
fi

# ---- 4. provider killed mid-stream -> clean error event, then [DONE] ------------------------------
# mock-drip: 10 chunks 200 ms apart. After the first content chunk reaches the client, the node
# serving it is SIGKILLed (it is the survivor of the test above, or either one).
body='{"model":"m-drip","stream":true,"messages":[{"role":"user","content":"midstream"}]}'
curl -s -N --max-time 40 -o "$T_DIR/s4.out" -w '%{http_code}' -H "Authorization: Bearer $MK_KEY2" \
  -H 'Content-Type: application/json' -d "$body" "$G/v1/chat/completions" >"$T_DIR/s4.code" &
cpid=$!
first_chunk() { grep -q '"content":"w0 "' "$T_DIR/s4.out" 2>/dev/null; }
if mk_poll 30 first_chunk && victim=$(which_backend); then
  mk_provider_kill "p${victim#b}"
  wait "$cpid"
  crc=$?
  n_content=$(grep -c '"content":"w' "$T_DIR/s4.out")
  if [[ $(cat "$T_DIR/s4.code") == 200 && $crc == 0 && $n_content -lt 10 ]] && ends_with_error "$T_DIR/s4.out"; then
    t_pass "provider ${victim#b} killed mid-stream: $n_content chunks, a JSON error event, then [DONE] (clean end)"
  else t_fail "mid-stream failure" "status $(cat "$T_DIR/s4.code") curl rc $crc: $ERR_DETAIL" "$(tail -c 600 "$T_DIR/s4.out")"; fi
else
  kill "$cpid" 2>/dev/null
  wait "$cpid"
  t_fail "the m-drip stream started" "$(head -c 400 "$T_DIR/s4.out")" "$(tail -5 "$T_DIR/gw-gw.err")"
fi

# The gateway is still healthy after both faults.
t_ok "gateway alive after the faults" curl -sf -o /dev/null "$G/healthz"
t_done
