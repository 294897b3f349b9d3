#!/usr/bin/env bash
# Marketplace restart safety and chain outage (issue 6), every component real.
#
#  - The gateway is SIGKILLed after it sent openSession and before the transaction was mined
#    (anvil's automine and interval mining off; the test waits for the transaction in the txpool),
#    the block is then mined and the gateway restarted on the same key store: the session on chain
#    must be found and reused or closed: no stake stranded (every session of the wallet on chain
#    is closed or known to `morgatectl sessions list` as open).
#  - The gateway's RPC goes down: requests on warm sessions keep working; a request needing a new
#    session fails with a clear 503; when the RPC is back, it works. Only the gateway's RPC path
#    is cut (it reaches anvil through a pass-through tcp_fault proxy that the test kills): the
#    provider nodes keep their own chain access, as they would in production; stopping anvil
#    itself would take the providers down too and test them instead.
source "$(dirname "$0")/../support/lib.sh"
source "$(dirname "$0")/../support/market.sh"

mk_require "$MK_FAULT"
mk_base
mk_backend b1 || { t_fail "mock backend starts"; t_done; exit 1; }
mk_provider_port p1
for m in m-chat m-other m-third m-fourth; do mk_offer 1 "${MK_EP[p1]}" "$m" || { t_fail "offer $m"; t_done; exit 1; }; done
mk_provider_start p1 1 b1 "m-chat=mock-chat m-other=mock-chat m-third=mock-chat m-fourth=mock-chat" || { t_fail "provider node starts"; t_done; exit 1; }
RPCP=$(mk_free_port)
start_rpc_proxy() {
  t_bg rpcproxy "$MK_FAULT" "$RPCP" "${CHAIN_RPC#http://}" pass
  RPCPROXY_PID=$T_LAST_PID
  mk_poll 5 "$CAST" chain-id --rpc-url "http://127.0.0.1:$RPCP" >/dev/null 2>&1
}
start_rpc_proxy || { t_fail "rpc proxy starts"; t_done; exit 1; }
MK_GW_RPC=http://127.0.0.1:$RPCP
mk_gateway_config gw '{"request_deadline_ms": 10000}'
# The wallet's allowance is set beforehand, so the only transaction of the first request is
# openSession (nothing else needs mining while automine is off).
chain_send "$CHAIN_KEY2" "$MOR" "approve(address,uint256)" "$DIAMOND" 1000000000000000000000000 >/dev/null
mk_gateway_start gw || { t_fail "gateway starts" "$(tail -5 "$T_DIR/gw-gw.err")"; t_done; exit 1; }
G=${MK_G[gw]}
mk_wait_model gw m-chat 20 && mk_wait_model gw m-other 10 && mk_wait_model gw m-fourth 10 ||
  { t_fail "catalogue lists the four models"; t_done; exit 1; }
t_pass "chain, provider, gateway (RPC through a proxy), four models listed"

# ---- 9. the gateway's RPC down --------------------------------------------------------------
mk_chat gw "$MK_KEY2" m-chat "warm" # opens the session; the provider knows it
t_ok "a warm session of m-chat (status $MK_STATUS)" test "$MK_STATUS" = 200
kill "$RPCPROXY_PID"
wait "$RPCPROXY_PID" 2>/dev/null
t_ok "the gateway's RPC is down" bash -c "! '$CAST' chain-id --rpc-url http://127.0.0.1:$RPCP 2>/dev/null"
mk_chat gw "$MK_KEY1" m-chat "rpc down" stream
if [[ $MK_STATUS == 200 && $(mk_sse_text <<<"$MK_BODY") == "w0 w1 w2 w3 w4 " ]]; then t_pass "RPC down: a streaming request on the warm session works"; else
  t_fail "warm session without RPC (stream)" "status $MK_STATUS" "${MK_BODY:0:400}"; fi
mk_chat gw "$MK_KEY2" m-chat "rpc down"
if [[ $MK_STATUS == 200 && $(mk_json 'o.choices[0].message.content' <<<"$MK_BODY") == "hello from the mock" ]]; then
  t_pass "RPC down: a non-streaming request on the warm session works"
else t_fail "warm session without RPC" "status $MK_STATUS" "${MK_BODY:0:400}"; fi
t0=$(t_now_ms)
mk_chat gw "$MK_KEY1" m-other "needs a new session"
ms=$(($(t_now_ms) - t0))
msg=$(mk_json 'o.error.message' <<<"$MK_BODY" 2>/dev/null)
if [[ $MK_STATUS == 503 && ${msg,,} =~ chain|rpc|unreachable|unavailable ]]; then
  t_pass "RPC down: a request needing a new session is a clear 503 in $ms ms: '$msg'"
else t_fail "new session without RPC" "status $MK_STATUS after $ms ms" "${MK_BODY:0:400}"; fi

start_rpc_proxy || t_fail "rpc proxy restarts"
mk_chat gw "$MK_KEY1" m-other "rpc back" stream
if [[ $MK_STATUS == 200 && $(mk_sse_text <<<"$MK_BODY") == "w0 w1 w2 w3 w4 " ]]; then t_pass "RPC back: the new session opens and the request is served"; else
  t_fail "after the RPC is back" "status $MK_STATUS" "${MK_BODY:0:400}"; fi

# ---- 6. gateway killed between openSession sent and mined --------------------------------------
rpc() { "$CAST" rpc --rpc-url "$CHAIN_RPC" "$@" >/dev/null; }
OPEN_SEL=$("$CAST" sig "openSession(address,uint256,bool,bytes,bytes)")
pending_open() {
  "$CAST" rpc --rpc-url "$CHAIN_RPC" txpool_content | node -e '
    let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const p=JSON.parse(s).pending||{};
    for (const a of Object.values(p)) for (const t of Object.values(a))
      if (String(t.input||t.data||"").startsWith(process.argv[1])) process.exit(0);
    process.exit(1)})' "$OPEN_SEL"
}
rpc evm_setIntervalMining 0 && rpc evm_setAutomine false
before6=$(mk_opened_count)
curl -s -N --max-time 30 -o "$T_DIR/s6.out" -H "Authorization: Bearer $MK_KEY1" -H 'Content-Type: application/json' \
  -d '{"model":"m-third","stream":true,"messages":[{"role":"user","content":"x"}]}' "$G/v1/chat/completions" &
cpid=$!
if mk_poll 20 pending_open; then
  t_pass "openSession is in the txpool, not mined"
  mk_gateway_kill gw KILL
  wait "$cpid" 2>/dev/null
  rpc evm_mine
  rpc evm_setAutomine true
  rpc evm_setIntervalMining 1
  t_ok "after the kill the block with openSession is mined: one more session on chain" test "$(mk_opened_count)" = $((before6 + 1))
  SID=$(mk_model_sessions m-third | head -1)
  mk_gateway_start gw || { t_fail "gateway restarts" "$(tail -5 "$T_DIR/gw-gw.err")"; t_done; exit 1; }
  handled() {
    [[ $(mk_session closedAt "$SID") != 0 ]] && return 0
    [[ $(mk_ctl_state "$SID") == open ]]
  }
  if mk_poll 20 handled; then
    if [[ $(mk_session closedAt "$SID") != 0 ]]; then how="closed on chain"; else how="reused (open in the key store)"; fi
    t_pass "after the restart the orphaned session is found: $how"
  else t_fail "orphaned session handled" "session $SID: closedAt $(mk_session closedAt "$SID"), key store state '$(mk_ctl_state "$SID")'" \
    "$(mk_ctl_sessions 2>&1 | head -c 600)" "$(grep -i sess "$T_DIR/gw-gw.err" | tail -5)"; fi
  mk_chat gw "$MK_KEY1" m-third "after restart" stream
  if [[ $MK_STATUS == 200 && $(mk_sse_text <<<"$MK_BODY") == "w0 w1 w2 w3 w4 " ]]; then t_pass "a request after the restart is served"; else
    t_fail "request after restart" "status $MK_STATUS" "${MK_BODY:0:400}"; fi
  stranded=()
  for sid in $(mk_user_sessions); do
    [[ $(mk_session closedAt "$sid") != 0 ]] && continue
    st=$(mk_ctl_state "$sid")
    [[ $st == open || $st == retired || $st == closing ]] || stranded+=("$sid (key store state '$st')")
  done
  if ((${#stranded[@]} == 0)); then t_pass "no stake stranded: every session on chain is closed or tracked ($(mk_opened_count) opened in all)"; else
    t_fail "stranded sessions" "${stranded[@]}"; fi
  if [[ $(mk_session closedAt "$SID") == 0 ]]; then
    t_ok "the recovered session was reused: no other SessionOpened" test "$(mk_opened_count)" = $((before6 + 1))
  fi
  # The dead instance may have held coordination locks (the "tx" lock around openSession): they
  # must not stall the next on-chain write, and the request deadline (10 s) holds meanwhile.
  t0=$(t_now_ms)
  mk_chat gw "$MK_KEY2" m-fourth "a new session after the restart" stream
  ms=$(($(t_now_ms) - t0))
  if [[ $MK_STATUS == 200 && $(mk_sse_text <<<"$MK_BODY") == "w0 w1 w2 w3 w4 " ]]; then
    t_pass "after the restart a new session (m-fourth) opens at once ($ms ms): no write stall from the killed instance"
  else t_fail "a new session after the restart" "status $MK_STATUS after $ms ms" "$(tail -c 300 <<<"$MK_BODY")" \
    "$(grep -iE 'lock|opensession' "$T_DIR/gw-gw.err" | tail -3)"; fi
  t_ok "the request deadline (10 s) holds while a session is awaited ($ms ms)" test "$ms" -le 13000
else
  rpc evm_setAutomine true
  rpc evm_setIntervalMining 1
  wait "$cpid" 2>/dev/null
  t_fail "openSession reached the txpool within 20 s" "$(head -c 300 "$T_DIR/s6.out")" "$(tail -5 "$T_DIR/gw-gw.err")"
fi

t_done
