#!/usr/bin/env bash
# Two gateway instances, one wallet, one Redis (issue 6): they coordinate their on-chain writes and
# their session pool through Redis, so no nonce is reused and no duplicate session is opened for the
# same demand. Every component real: redis-server, anvil, morgate-provider, two morgate processes
# on one key store and one wallet.
#  (a) both pre-warm one idle session of m-h (min_idle 1), started at the same moment: exactly one
#      session is opened for it;
#  (b) one first request for m-a on each instance at the same moment: both served, at most one
#      session per request, then more requests on either instance open nothing new (an idle
#      session opened by one instance serves the other);
#  (c) first requests for two different models on the two instances at the same moment (two
#      openSession transactions from one wallet at once): both served, no nonce error.
source "$(dirname "$0")/../support/lib.sh"
source "$(dirname "$0")/../support/market.sh"

mk_require
mk_base
mk_backend b1 || { t_fail "mock backend starts"; t_done; exit 1; }
mk_provider_port p1
for m in m-h m-a m-b m-c; do mk_offer 1 "${MK_EP[p1]}" "$m" || { t_fail "offer $m"; t_done; exit 1; }; done
mk_provider_start p1 1 b1 "m-h=mock-chat m-a=mock-chat m-b=mock-chat m-c=mock-chat" || { t_fail "provider node starts"; t_done; exit 1; }
mk_gateway_config g1 '{"models": {"m-h": {"min_idle": 1}}}'
mk_gateway_config g2 '{"models": {"m-h": {"min_idle": 1}}}'
mk_gateway_spawn g1
mk_gateway_spawn g2
mk_wait_http "${MK_G[g1]}/healthz" 5 && mk_wait_http "${MK_G[g2]}/healthz" 5 ||
  { t_fail "both gateways start" "$(tail -3 "$T_DIR/gw-g1.err")" "$(tail -3 "$T_DIR/gw-g2.err")"; t_done; exit 1; }
t_pass "two gateways on one wallet, one key store, one Redis"

# ---- (a) pre-warming from two instances ------------------------------------------------------------
h_count() { mk_model_sessions m-h | grep -c .; }
some_h() { [[ $(h_count) -ge 1 ]]; }
if mk_poll 30 some_h; then
  sleep 5 # several maintenance rounds of both instances
  n=$(h_count)
  if [[ $n == 1 ]]; then t_pass "min_idle 1 on both instances: exactly one session pre-opened for m-h"; else
    t_fail "pre-warm opened $n sessions for m-h, wanted 1" "$(grep -iE 'open|lock|redis' "$T_DIR/gw-g1.err" | tail -4)" \
      "$(grep -iE 'open|lock|redis' "$T_DIR/gw-g2.err" | tail -4)"; fi
else t_fail "a session pre-opened for m-h within 30 s" "$(tail -4 "$T_DIR/gw-g1.err")"; fi

mk_wait_model g1 m-a 20 && mk_wait_model g2 m-a 20 && mk_wait_model g2 m-c 20 || { t_fail "catalogues list the models"; t_done; exit 1; }

# ---- (b) concurrent first requests for one model -------------------------------------------------
both() { # MODEL1 GW1 MODEL2 GW2: one streaming request on each at once; sets S1 S2 (status/text)
  (mk_chat "$2" "$MK_KEY1" "$1" "one" stream && echo "$MK_STATUS/$(mk_sse_text <<<"$MK_BODY")" >"$T_DIR/both1") &
  local bgpid=$!
  mk_chat "$4" "$MK_KEY2" "$3" "two" stream
  S2="$MK_STATUS/$(mk_sse_text <<<"$MK_BODY")"
  wait "$bgpid"
  S1=$(cat "$T_DIR/both1")
}
both m-a g1 m-a g2
want="200/w0 w1 w2 w3 w4 "
if [[ $S1 == "$want" && $S2 == "$want" ]]; then t_pass "one first request for m-a on each instance at once: both served"; else
  t_fail "concurrent first requests" "g1: $S1" "g2: $S2" "$(tail -3 "$T_DIR/gw-g1.err")" "$(tail -3 "$T_DIR/gw-g2.err")"; fi
na=$(mk_model_sessions m-a | grep -c .)
t_ok "at most one session per concurrent request for m-a ($na)" test "$na" -ge 1 -a "$na" -le 2
for g in g2 g1 g2; do
  mk_chat "$g" "$MK_KEY3" m-a "more" stream
  [[ $MK_STATUS == 200 ]] || t_fail "request on $g" "status $MK_STATUS" "${MK_BODY:0:300}"
done
t_ok "three more requests on either instance open no new session for m-a" test "$(mk_model_sessions m-a | grep -c .)" = "$na"

# requests waiting for a busy session do not hammer Redis: the shared session table is read at
# most every 250 ms per instance for all waiters (it was read by every waiter on every wake-up:
# 12 reads per request in the benchmark)
RPORT=${MK_REDIS_URL##*:}
RPORT=${RPORT%%/*}
hgetall() { redis-cli -p "$RPORT" info commandstats | sed -n 's/^cmdstat_hgetall:calls=\([0-9]*\).*/\1/p'; }
h0=$(hgetall)
pids=()
for i in $(seq 16); do
  g=g$((i % 2 + 1))
  curl -s -N --max-time 30 -o "$T_DIR/burst$i.out" -w '%{http_code}' -H "Authorization: Bearer $MK_KEY3" \
    -H 'Content-Type: application/json' -d '{"model":"m-a","stream":true,"messages":[{"role":"user","content":"burst"}]}' \
    "${MK_G[$g]}/v1/chat/completions" >"$T_DIR/burst$i.code" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
ok=0
for i in $(seq 16); do [[ $(cat "$T_DIR/burst$i.code") == 200 ]] && grep -q 'data: \[DONE\]' "$T_DIR/burst$i.out" && ok=$((ok + 1)); done
h1=$(hgetall)
t_ok "16 concurrent requests on two instances all served ($ok)" test "$ok" = 16
t_ok "...reading the shared session table $((h1 - h0)) times (at most 2 per request)" test $((h1 - h0)) -le 32

# ---- (c) two openSession transactions from one wallet at once ----------------------------------------
both m-b g1 m-c g2
if [[ $S1 == "$want" && $S2 == "$want" ]]; then t_pass "first requests for m-b (g1) and m-c (g2) at once: both served"; else
  t_fail "concurrent opens for two models" "g1: $S1" "g2: $S2" "$(tail -3 "$T_DIR/gw-g1.err")" "$(tail -3 "$T_DIR/gw-g2.err")"; fi
t_ok "one session each for m-b and m-c" test "$(mk_model_sessions m-b | grep -c .)/$(mk_model_sessions m-c | grep -c .)" = 1/1
if grep -iE 'nonce too low|nonce too high|replacement transaction|already known|invalid nonce' "$T_DIR"/gw-g1.err "$T_DIR"/gw-g2.err >"$T_DIR/nonce.txt"; then
  t_fail "nonce errors in the gateway logs" "$(head -3 "$T_DIR/nonce.txt")"
else t_pass "no nonce error in either gateway's log"; fi
t_done
