#!/usr/bin/env bash
# router-core's session pool (rc_pool) against every real component: anvil with the test
# contracts, two morgate-provider nodes bidding on one model with the mock_openai backend
# (mock-echo: the answer is the request, so each caller can check it got its own text), driven
# by tests/support/bin_rc_pool.c. Covers: open on demand and stream, reuse, two concurrent
# requests on two sessions, failover when the first-ranked provider's node is killed, the
# dispute close once that provider is gone, restart recovery (same store; empty store: adopted
# from getUserSessions with a fresh handshake; an "opening" record whose openSession never
# happened -> failed), and the close after endsAt with the provider's receipt once the chain is
# moved past it. Two faults through tests/support/bin_tcp_fault.c: a provider whose signatures are
# wrong (abandoned, the request goes to the next one) and the RPC going away (warm sessions keep
# serving, opening a session fails with a chain error).
source "$(dirname "$0")/../support/lib.sh"
source "$(dirname "$0")/../support/market.sh"

POOL=$T_BUILD/tests/rc_pool
for b in "$POOL" "$MK_PROV" "$MK_CTL" "$MK_MOCK" "$MK_PVLINK" "$MK_FAULT"; do
  [[ -x $b ]] || { t_skip "rc_pool end to end" "$b not built"; t_done; exit 0; }
done
chain_start || { t_fail "devnet starts"; t_done; exit 1; }
MK_WALLET_ADDR=$CHAIN_ADDR2
export RC_POOL_KEY=$CHAIN_KEY2 # the funded user (account 2)
M=pool-m

mk_backend b || { t_fail "mock backend starts"; t_done; exit 1; }
mk_provider_port pa
mk_provider_port pb
mk_provider_port pc
LIAR_PORT=$(mk_free_port)
# pa (account 1) is cheaper, so it ranks first (§3.8 divides by the price). On model $M2, C
# (account 0) is the cheapest but is reached through a proxy that corrupts its signatures.
M2=pool-liar
if mk_offer 1 "${MK_EP[pa]}" $M 10000000000000 && mk_offer 3 "${MK_EP[pb]}" $M 20000000000000 &&
  mk_offer 0 "127.0.0.1:$LIAR_PORT" $M2 10000000000000 && mk_offer 3 "${MK_EP[pb]}" $M2 20000000000000; then
  t_pass "two providers bid on each of two models"
else
  t_fail "offers"; t_done; exit 1
fi
# B also sells a model whose backend stalls after its first chunk and one whose backend answers 503
M3=pool-hold
M4=pool-err
if mk_offer 3 "${MK_EP[pb]}" $M3 10000000000000 && mk_offer 3 "${MK_EP[pb]}" $M4 10000000000000; then
  t_pass "B also offers a stalling model and a failing one"
else t_fail "offers 3/4"; fi

t_ok "provider A starts" mk_provider_start pa 1 b "$M=mock-echo"
t_ok "provider B starts" mk_provider_start pb 3 b "$M=mock-echo $M2=mock-echo $M3=mock-hold $M4=mock-status-503"
t_ok "provider C starts" mk_provider_start pc 0 b "$M2=mock-echo"
t_bg honest "$MK_FAULT" "$LIAR_PORT" "${MK_EP[pc]}" pass
HONEST_PID=$T_LAST_PID
mk_poll 5 grep -q listening "$T_DIR/honest.err"
PC=${CHAIN_ADDR0,,}
PA=${CHAIN_ADDR1,,}
PB=${CHAIN_ADDR3,,}

# ---- the pool process: commands on a FIFO, one answer line each -----------------------------
# Several pools may run at once: pool_use NAME picks the one the next commands go to.
declare -A P_OUT P_IN P_PID P_N
pool_start() { # NAME STORE ARGS...
  local name=$1 store=$2 fd
  shift 2
  mkdir -p "$store"
  mkfifo "$T_DIR/$name.in"
  P_OUT[$name]=$T_DIR/$name.out
  : >"${P_OUT[$name]}"
  "$POOL" "$CHAIN_RPC" "$CHAIN_ID" "$DIAMOND" "$MOR" "$store" "$@" <"$T_DIR/$name.in" >"${P_OUT[$name]}" 2>"$T_DIR/$name.err" &
  T_PIDS+=($!)
  P_PID[$name]=$!
  exec {fd}>"$T_DIR/$name.in"
  P_IN[$name]=$fd
  pool_use "$name"
}
pool_use() { CUR=$1 POUT=${P_OUT[$1]} PIN=${P_IN[$1]} POOL_PID=${P_PID[$1]}; }
pool_send() { # CMD...: send without waiting for the answer
  P_N[$CUR]=$(wc -l <"$POUT")
  echo "$*" >&"$PIN"
}
pool_recv() { # -> R (the answer to the last pool_send); 90 s at most
  local i n=${P_N[$CUR]}
  for ((i = 0; i < 1800; i++)); do
    if (($(wc -l <"$POUT") > n)); then
      R=$(sed -n "$((n + 1))p" "$POUT")
      return 0
    fi
    sleep 0.05
  done
  R="ERR no answer"
  return 1
}
pool_cmd() { pool_send "$@" && pool_recv; }
pool_stop() {
  pool_cmd quit
  exec {PIN}>&-
  wait "$POOL_PID" 2>/dev/null
}
field() { sed -nE "s/.*(^| )$1=([^ ]*).*/\2/p" <<<"$R"; }
req() { printf '{"model":"x","messages":[{"role":"user","content":"%s"}]}' "$2" >"$1"; }

pool_start p1 "$T_DIR/store" --session-s 360 --gone-after-ms 3000 --bench-ms 500 --idle-timeout-ms 600
pool_cmd wait-model $M 20
if [[ $R == "OK bids=2" ]]; then t_pass "catalogue lists the model with its 2 active bids"; else t_fail "catalogue" "$R"; fi

req "$T_DIR/r0" zero
pool_cmd prompt no-such-model "$T_DIR/r0" "$T_DIR/o0"
if [[ $R == "ERR reason=unknown_model"* ]]; then t_pass "unknown model: unknown_model, nothing opened"; else t_fail "unknown model" "$R"; fi

# ---- open on demand, then reuse -----------------------------------------------------------
req "$T_DIR/r1" alpha-123
pool_cmd prompt $M "$T_DIR/r1" "$T_DIR/o1"
S1=$(field session)
COLD_MS=$(field total_ms)
if [[ $R == OK* && $(field opened) == 1 && $(field waited) == 1 && $(field provider) == "$PA" && $(field attempts) == 1 ]] &&
  grep -q alpha-123 "$T_DIR/o1"; then
  t_pass "cold request: session opened on chain with the first-ranked provider, answer streamed (${COLD_MS} ms)"
else t_fail "cold request" "$R" "$(tail -5 "$T_DIR/p1.err")"; fi
if [[ $(mk_session isActive "$S1") == true && $(mk_session closedAt "$S1") == 0 ]]; then
  t_pass "the session is open on chain"
else t_fail "session on chain" "$(mk_session isActive "$S1")"; fi

req "$T_DIR/r2" bravo-456
pool_cmd prompt $M "$T_DIR/r2" "$T_DIR/o2"
WARM_MS=$(field total_ms)
if [[ $R == OK* && $(field opened) == 0 && $(field waited) == 0 && $(field session) == "$S1" ]] && grep -q bravo-456 "$T_DIR/o2" &&
  ! grep -q alpha-123 "$T_DIR/o2"; then
  t_pass "second request reuses the session (${WARM_MS} ms, first chunk $(field first_ms) ms)"
else t_fail "reuse" "$R"; fi

# ---- two at once: two sessions, each caller its own text ---------------------------------------
req "$T_DIR/c.0" charlie-0
req "$T_DIR/c.1" delta-1
pool_cmd concurrent 2 $M "$T_DIR/c" 800
if [[ $R == "OK distinct=2 opened=1"* ]] && grep -q charlie-0 "$T_DIR/c.0.out" && ! grep -q delta-1 "$T_DIR/c.0.out" &&
  grep -q delta-1 "$T_DIR/c.1.out" && ! grep -q charlie-0 "$T_DIR/c.1.out"; then
  t_pass "two concurrent requests: two sessions (one reused, one opened), no crosstalk"
else t_fail "concurrent" "$R"; fi
S2=$(sed -nE 's/.*sessions=([^ ]*).*/\1/p' <<<"$R" | tr ',' '\n' | grep -v "$S1" | head -1)

# ---- a provider whose signatures go wrong is abandoned ---------------------------------------------
req "$T_DIR/l0" golf-0
pool_cmd prompt $M2 "$T_DIR/l0" "$T_DIR/ol0" 20000
SC=$(field session)
if [[ $R == OK* && $(field provider) == "$PC" && $(field opened) == 1 ]]; then
  t_pass "C (cheapest on $M2) serves a first request"
else t_fail "C honest" "$R"; fi
# from now on C's answers come with corrupted signatures
kill "$HONEST_PID"
wait "$HONEST_PID" 2>/dev/null
t_bg liar "$MK_FAULT" "$LIAR_PORT" "${MK_EP[pc]}" corrupt-sig
mk_poll 5 grep -q listening "$T_DIR/liar.err"
req "$T_DIR/l1" hotel-1
pool_cmd prompt $M2 "$T_DIR/l1" "$T_DIR/ol1" 20000
if [[ $R == OK* && $(field provider) == "$PB" && $(field attempts) == 2 && $(field opened) == 1 ]] &&
  grep -q hotel-1 "$T_DIR/ol1" && ! grep -q golf "$T_DIR/ol1" && grep -q "tcp_fault: corrupted" "$T_DIR/liar.err" &&
  grep -q "abandoned" "$T_DIR/p1.err"; then
  t_pass "bad signatures on C's session: C abandoned, the request fails over to B"
else t_fail "liar" "$R" "$(tail -3 "$T_DIR/p1.err")"; fi
pool_cmd wait-state "$SC" closed 20
if [[ $R == "OK dispute=1"* && $(mk_session closedAt "$SC") != 0 ]]; then
  t_pass "the abandoned provider's session is retired and closed (its report does not verify: dispute)"
else t_fail "abandoned session closed" "$R"; fi
NC=$(grep -c "tcp_fault: corrupted" "$T_DIR/liar.err")
req "$T_DIR/l.0" india-0
req "$T_DIR/l.1" juliet-1
pool_cmd concurrent 2 $M2 "$T_DIR/l" 500
if [[ $R == "OK distinct=2 opened=1"* && $(grep -c "tcp_fault: corrupted" "$T_DIR/liar.err") == "$NC" ]] &&
  grep -q india-0 "$T_DIR/l.0.out" && grep -q juliet-1 "$T_DIR/l.1.out"; then
  t_pass "the abandoned provider is not tried again"
else t_fail "liar not retried" "$R"; fi

# ---- failover: provider A's node dies -----------------------------------------------------------
mk_provider_kill pa
req "$T_DIR/r3" echo-789
pool_cmd prompt $M "$T_DIR/r3" "$T_DIR/o3" 20000
S3=$(field session)
if [[ $R == OK* && $(field provider) == "$PB" && $(field attempts) -ge 2 && $(field opened) == 1 ]] &&
  grep -q echo-789 "$T_DIR/o3"; then
  t_pass "provider A killed: the request fails over to B transparently (attempts $(field attempts))"
else t_fail "failover" "$R" "$(tail -5 "$T_DIR/p1.err")"; fi

# A stays dead past gone_after_ms (3 s): its sessions are closed early, as disputes (no receipt)
pool_cmd wait-state "$S1" closed 30
if [[ $R == "OK dispute=1"* ]]; then t_pass "provider gone: its session closed with a user-signed receipt"; else t_fail "dispute close" "$R" "$(grep -i 'close\|gone' "$T_DIR/p1.err" | tail -5)"; fi
if [[ $(mk_session closedAt "$S1") != 0 && $(mk_session closeoutType "$S1") == 1 ]]; then
  t_pass "on chain: closedAt set, closeoutType 1 (dispute)"
else t_fail "dispute on chain" "closedAt=$(mk_session closedAt "$S1") type=$(mk_session closeoutType "$S1")"; fi
[[ -n $S2 ]] && pool_cmd wait-state "$S2" closed 30
if [[ -n $S2 && $R == "OK dispute=1"* ]]; then t_pass "the other session on A closed too"; else t_fail "second A session" "$R"; fi
# a signed backend error is the request's answer: no failover, the provider is not blamed
req "$T_DIR/r9" whiskey
pool_cmd prompt $M4 "$T_DIR/r9" "$T_DIR/o9"
if [[ $R == "ERR reason=provider_error first_chunk=0 attempts=1"* ]] && grep -q '^ERROR .*providerModelError' "$T_DIR/o9"; then
  t_pass "signed backend error: provider_error, the decrypted error passed on, no failover"
else t_fail "provider error" "$R" "$(cat "$T_DIR/o9")"; fi
# a stall after the first chunk: the error is returned (the caller ends its stream), no failover
printf '{"model":"x","stream":true,"messages":[{"role":"user","content":"x"}]}' >"$T_DIR/r10"
pool_cmd prompt $M3 "$T_DIR/r10" "$T_DIR/o10"
if [[ $R == "ERR reason=provider first_chunk=1 attempts=1"* && $R == *idle_timeout* ]] && [[ $(grep -c . "$T_DIR/o10") -ge 1 ]]; then
  t_pass "provider stalls after the first chunk: provider error, no failover"
else t_fail "mid-stream failure" "$R"; fi

pool_cmd sessions
S_ERR=$(tr ', ' '\n\n' <<<"$R" | grep ":$M4\$" | cut -d: -f1 | head -1)
pool_cmd stats
if [[ $(field opened) == 8 && $(field disputes) == 3 && $(field failovers) -ge 2 && $(field prompt_errors) == 3 ]]; then
  t_pass "stats: $R"
else t_fail "stats" "$R"; fi
pool_stop

# ---- recovery ---------------------------------------------------------------------------------------
# Same store: S3 (B, open, time left) is reused with its stored provider key; an "opening" record
# whose openSession never happened becomes failed.
pool_start p2 "$T_DIR/store" --session-s 360 --inject-opening 0x$(printf '%064d' 42)
pool_cmd wait-model $M 20
req "$T_DIR/r4" foxtrot-1
pool_cmd prompt $M "$T_DIR/r4" "$T_DIR/o4"
if [[ $R == OK* && $(field session) == "$S3" && $(field opened) == 0 ]] && grep -q foxtrot-1 "$T_DIR/o4"; then
  t_pass "restart on the same store: the open session is reused"
else t_fail "recovery (store)" "$R"; fi
pool_cmd sessions
if [[ $R == *"0x$(printf '%064d' 0):failed:"* ]]; then
  t_pass "an opening record whose openSession never happened is marked failed"
else t_fail "opening -> failed" "$R"; fi
pool_stop

# Empty store but for an "opening" record of B's bid on $M (the process died before the receipt):
# the session is found with getUserSessions, matched to that record and reused (a handshake
# first: the record has no provider key).
pool_start p3 "$T_DIR/store-empty" --session-s 360 --gone-after-ms 2000 --inject-opening "${MK_BID[$M/3]}"
pool_cmd wait-model $M 20
req "$T_DIR/r5" golf-2
pool_cmd prompt $M "$T_DIR/r5" "$T_DIR/o5"
if [[ $R == OK* && $(field session) == "$S3" && $(field opened) == 0 ]] && grep -q golf-2 "$T_DIR/o5"; then
  t_pass "restart with only an 'opening' record: the session it was opening is found on chain and reused"
else t_fail "recovery (chain)" "$R" "$(tail -5 "$T_DIR/p3.err")"; fi
if grep -q "interrupted open" "$T_DIR/p3.err" && grep -q "adopted session" "$T_DIR/p3.err"; then
  t_pass "the other open sessions of the wallet, unknown to the store, are adopted too"
else t_fail "adoption" "$(cat "$T_DIR/p3.err")"; fi

# ---- expiry: the chain moves past endsAt; closed with B's receipt ---------------------------------
ENDS=$(mk_session endsAt "$S3")
NOW=$(chain_now)
chain_time_travel $((ENDS - NOW + 5))
pool_cmd wait-state "$S3" closed 30
if [[ $R == "OK dispute=0"* ]]; then t_pass "after endsAt the session is closed with the provider's receipt"; else t_fail "expiry close" "$R" "$(tail -5 "$T_DIR/p3.err")"; fi
CA=$(mk_session closedAt "$S3")
if [[ $CA != 0 && $CA -ge $ENDS && $(mk_session closeoutType "$S3") == 0 ]]; then
  t_pass "on chain: closedAt ($CA) >= endsAt ($ENDS), closeoutType 0 (no dispute, no stake on hold)"
else t_fail "expiry on chain" "closedAt=$CA endsAt=$ENDS type=$(mk_session closeoutType "$S3")"; fi
# the session on which every prompt failed: the provider has no figures for it, but it is a
# session of its own bid, so it reports zeros and the close is not a dispute (no stake held)
pool_cmd wait-state "$S_ERR" closed 20
if [[ -n $S_ERR && $R == "OK dispute=0"* && $(mk_session closedAt "$S_ERR") != 0 && $(mk_session closeoutType "$S_ERR") == 0 ]]; then
  t_pass "a session that never served a prompt is closed after endsAt with the provider's zero-figure receipt"
else t_fail "session without prompts" "$S_ERR $R"; fi
pool_stop

# ---- the RPC goes away ------------------------------------------------------------------------------
RPC_PORT=$(mk_free_port)
t_bg rpcproxy "$MK_FAULT" "$RPC_PORT" "${CHAIN_RPC#http://}" pass
RPC_PROXY=$T_LAST_PID
mk_poll 5 grep -q listening "$T_DIR/rpcproxy.err"
SAVED_RPC=$CHAIN_RPC
CHAIN_RPC=http://127.0.0.1:$RPC_PORT
pool_start p4 "$T_DIR/store4" --session-s 360 --min-idle $M2=1
CHAIN_RPC=$SAVED_RPC
pool_cmd wait-model $M 20
pool_cmd wait-idle $M2 1 20
if [[ $R == OK* ]]; then t_pass "min_idle: a session is opened for the hot model before any request"; else t_fail "min_idle" "$R"; fi
req "$T_DIR/r11" xray
pool_cmd prompt $M2 "$T_DIR/r11" "$T_DIR/o11"
if [[ $R == OK* && $(field opened) == 0 && $(field waited) == 0 ]] && grep -q xray "$T_DIR/o11"; then
  t_pass "the first request on the hot model finds a warm session ($(field total_ms) ms)"
else t_fail "pre-warmed" "$R"; fi
req "$T_DIR/r6" kilo-1
pool_cmd prompt $M "$T_DIR/r6" "$T_DIR/o6"
S6=$(field session)
kill "$RPC_PROXY"
wait "$RPC_PROXY" 2>/dev/null
req "$T_DIR/r7" lima-2
pool_cmd prompt $M "$T_DIR/r7" "$T_DIR/o7"
if [[ $R == OK* && $(field session) == "$S6" ]] && grep -q lima-2 "$T_DIR/o7"; then
  t_pass "RPC down: a warm session keeps serving"
else t_fail "warm without RPC" "$R"; fi
req "$T_DIR/d.0" mike-0
req "$T_DIR/d.1" november-1
pool_cmd concurrent 2 $M "$T_DIR/d" 1500
if [[ $R == *"reason=chain"* ]] && cat "$T_DIR/d.0.out" "$T_DIR/d.1.out" | grep -qE 'mike-0|november-1'; then
  t_pass "RPC down: the request that needs a new session fails with a chain error, the other is served"
else t_fail "open without RPC" "$R"; fi
pool_cmd stats
if [[ $(field chain_ok) == 0 ]]; then t_pass "stats say the chain is down"; else t_fail "chain_ok" "$R"; fi
pool_stop

# ---- two processes, one wallet, coordinated (file-backed ops: what Redis does for the gateway) --
pool_start q1 "$T_DIR/store-q1" --session-s 360 --coord "$T_DIR/coord"
pool_start q2 "$T_DIR/store-q2" --session-s 360 --coord "$T_DIR/coord"
pool_use q1
pool_cmd wait-model $M 20
pool_use q2
pool_cmd wait-model $M 20
# q1 holds the one open session (adopted from chain by both) while q2 asks: q2 must not share it
req "$T_DIR/e.0" oscar-0
pool_use q1
pool_send concurrent 1 $M "$T_DIR/e" 2000
sleep 0.5
req "$T_DIR/r8" papa-1
pool_use q2
pool_cmd prompt $M "$T_DIR/r8" "$T_DIR/o8"
Q2=$(field session)
if [[ $R == OK* && $(field opened) == 1 && $Q2 != "$S6" ]] && grep -q papa-1 "$T_DIR/o8"; then
  t_pass "coordinated: a session leased by the other process is not shared, a new one is opened"
else t_fail "lease" "$R"; fi
pool_use q1
pool_recv
if [[ $R == "OK distinct=1 opened=0 sessions=$S6" ]]; then t_pass "the other process served on its session meanwhile"; else t_fail "q1 held request" "$R"; fi
# q1 needs two sessions at once: the one q2 opened comes from the shared table, none is opened
req "$T_DIR/f.0" quebec-0
req "$T_DIR/f.1" romeo-1
pool_cmd concurrent 2 $M "$T_DIR/f" 800
if [[ $R == "OK distinct=2 opened=0"* && $R == *"$Q2"* ]] && grep -q quebec-0 "$T_DIR/f.0.out" && grep -q romeo-1 "$T_DIR/f.1.out"; then
  t_pass "coordinated: a session opened by the other process serves this one's demand"
else t_fail "shared table" "$R" "$(tail -3 "$T_DIR/q1.err")"; fi
# both open sessions at once from one wallet (different models): no nonce collision
for i in 0 1 2; do req "$T_DIR/g.$i" sierra-$i; req "$T_DIR/h.$i" tango-$i; done
pool_use q1
pool_send concurrent 3 $M2 "$T_DIR/g" 1000
pool_use q2
pool_cmd concurrent 3 $M "$T_DIR/h" 1000
RQ2=$R
pool_use q1
pool_recv
if [[ $R == "OK distinct=3"* && $RQ2 == "OK distinct=3"* ]]; then
  t_pass "two processes opening sessions at once from one wallet: every transaction went through"
else t_fail "concurrent opens" "$R" "$RQ2" "$(grep -i 'fail\|nonce' "$T_DIR"/q*.err | tail -3)"; fi
pool_cmd stats
if [[ $(field coordinated) == 1 ]]; then t_pass "stats: coordinated"; else t_fail "coordinated" "$R"; fi
pool_stop
pool_use q2
pool_stop

if cat "$T_DIR"/p*.err "$T_DIR"/q*.err | grep -qi "${CHAIN_KEY2#0x}"; then
  t_fail "logs carry no key material"
else t_pass "logs carry no key material"; fi

echo "# figures: cold request (open on chain + prompt) ${COLD_MS} ms, warm request ${WARM_MS} ms"
t_done
