#!/usr/bin/env bash
# morgate with Redis rate limits: two gateway processes on one real redis-server enforce one
# limit (requests per minute and concurrent streams), a client that leaves frees its slot at
# once, and Redis killed and restarted under load: the gateways keep serving on in-process
# limits, /readyz and /metrics say degraded, and both return to Redis when it is back.
source "$(dirname "$0")/../support/lib.sh"

export MORGATE_DB=$T_DIR/var/ks.db
unset MORGATE_PEPPER_FILE MORGATE_LISTEN MORGATE_REDIS_URL MORGATE_ADMIN_LISTEN
CTL=$T_BUILD/bin/morgatectl
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_http() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.025; done; return 1; }
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const o=JSON.parse(s);console.log(eval(process.argv[1]))})' "$1"; }

RPORT=$(free_port)
MPORT=$(free_port)
P1=$(free_port)
P2=$(free_port)
start_redis() {
  t_bg redis redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no
  REDIS_PID=$T_LAST_PID
  for _ in $(seq 100); do redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG && return 0; sleep 0.05; done
  return 1
}
start_redis || { t_fail "redis-server starts"; t_done; exit 1; }
t_bg mock "$T_BUILD/tests/mock_openai" "$MPORT"
for p in $P1 $P2; do
  cat >"$T_DIR/gw$p.json" <<JSON
{"listen": "127.0.0.1:$p", "keystore": {"path": "$MORGATE_DB", "poll_ms": 100},
 "redis_url": "redis://127.0.0.1:$RPORT/0",
 "ratelimit": {"timeout_ms": 200, "backoff_min_ms": 50, "backoff_max_ms": 300, "lease_ms": 1000},
 "backends": [{"name": "mock", "base_url": "http://127.0.0.1:$MPORT/v1"}],
 "models": [{"name": "mock-chat", "backend": "mock"}, {"name": "mock-drip", "backend": "mock"}]}
JSON
done
"$CTL" init >/dev/null
"$CTL" tenant create acme >/dev/null
mkkey() { "$CTL" key create "$@" | sed -n 's/^key: //p'; }
RPM=$(mkkey --tenant acme --rpm 10)
CONC=$(mkkey --tenant acme --concurrency 2)
LOAD=$(mkkey --tenant acme --rpm 100000)
RPM3=$(mkkey --tenant acme --rpm 3)
ONE=$(mkkey --tenant acme --concurrency 1)
t_bg gw1 "$T_BUILD/bin/morgate" --config "$T_DIR/gw$P1.json"
t_bg gw2 "$T_BUILD/bin/morgate" --config "$T_DIR/gw$P2.json"
wait_http "http://127.0.0.1:$P1/healthz" && wait_http "http://127.0.0.1:$P2/healthz" && wait_http "http://127.0.0.1:$MPORT/stats" ||
  { t_fail "gateways start" "$(cat "$T_DIR"/gw*.err)"; t_done; exit 1; }
for _ in $(seq 100); do
  [[ $(curl -s "http://127.0.0.1:$P1/readyz" | json o.redis) == ok && $(curl -s "http://127.0.0.1:$P2/readyz" | json o.redis) == ok ]] && break
  sleep 0.05
done
t_ok "both gateways are ready on Redis" test "$(curl -s "http://127.0.0.1:$P2/readyz" | json o.status+o.redis)" = readyok

chat='{"model":"mock-chat","messages":[]}'
call() { # port key [body]
  curl -s -o "$T_DIR/last" -D "$T_DIR/lasthdr" -w '%{http_code}' "http://127.0.0.1:$1/v1/chat/completions" -H "Authorization: Bearer $2" -d "${3:-$chat}"
}

# ---- one limit across two processes ----
ok=0 limited=0
for i in $(seq 16); do
  p=$P1
  ((i % 2)) && p=$P2
  c=$(call "$p" "$RPM")
  [[ $c == 200 ]] && ok=$((ok + 1))
  [[ $c == 429 ]] && limited=$((limited + 1))
done
t_ok "rpm 10 across two gateways: exactly 10 of 16 admitted ($ok ok, $limited limited)" test "$ok" = 10 -a "$limited" = 6
t_ok "the 429 carries Retry-After and the rate-limit headers" \
  bash -c "grep -qi '^retry-after: [0-9]' '$T_DIR/lasthdr' && grep -qi '^x-ratelimit-remaining-requests: 0' '$T_DIR/lasthdr'"
t_ok "the 429 body is OpenAI's shape" test "$(json 'o.error.code+"/"+o.error.type' <"$T_DIR/last")" = rate_limit_exceeded/requests
t_ok "x-ratelimit-limit-requests says 10" bash -c "grep -qi '^x-ratelimit-limit-requests: 10' '$T_DIR/lasthdr'"

# ---- concurrency across two processes; a client that leaves frees its slot ----
drip='{"model":"mock-drip","stream":true,"messages":[]}'
curl -sN "http://127.0.0.1:$P1/v1/chat/completions" -H "Authorization: Bearer $CONC" -d "$drip" -o "$T_DIR/s1" &
S1=$!
curl -sN "http://127.0.0.1:$P2/v1/chat/completions" -H "Authorization: Bearer $CONC" -d "$drip" -o "$T_DIR/s2" &
S2=$!
sleep 0.4
t_ok "a third stream over concurrency 2 (other gateway) is refused" test "$(call "$P1" "$CONC" "$drip")" = 429
kill "$S1"
wait "$S1" 2>/dev/null
got=000
for _ in $(seq 20); do
  got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 0.3 "http://127.0.0.1:$P2/v1/chat/completions" -H "Authorization: Bearer $CONC" -d "$drip")
  [[ $got == 200 ]] && break
  sleep 0.05
done
t_ok "a client that disconnects frees its slot at once" test "$got" = 200
wait "$S2"
t_ok "the stream that stayed completed" grep -q 'data: \[DONE\]' "$T_DIR/s2"

# ---- a stream longer than the slot lease (1 s) keeps its slot: the engine renews it ----
curl -sN "http://127.0.0.1:$P1/v1/chat/completions" -H "Authorization: Bearer $ONE" -d "$drip" -o "$T_DIR/s3" &
S3=$!
sleep 1.6
t_ok "a stream past its lease still holds its slot (renewed)" test "$(call "$P2" "$ONE" "$drip")" = 429
wait "$S3"
t_ok "and the slot is free once the stream ends" test "$(call "$P2" "$ONE")" = 200

# ---- Redis killed and restarted under load ----
load() { # port seconds -> counts in $T_DIR/load.$1
  local end=$((SECONDS + $2)) ok=0 bad=0
  while ((SECONDS < end)); do
    if [[ $(call "$1" "$LOAD") == 200 ]]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
  done
  echo "$ok $bad" >"$T_DIR/load.$1"
}
load "$P1" 4 &
L1=$!
load "$P2" 4 &
L2=$!
sleep 0.7
kill "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null
sleep 0.8
t_ok "readyz says degraded while Redis is down (still serving)" \
  test "$(curl -s "http://127.0.0.1:$P1/readyz" | json 'o.status+"/"+o.redis')" = ready/degraded
t_ok "metrics show the degradation and Redis errors" \
  bash -c "curl -s http://127.0.0.1:$P2/metrics | grep -q '^morgate_redis_degraded 1' && curl -s http://127.0.0.1:$P2/metrics | grep -q '^morgate_redis_errors_total [1-9]'"
start_redis
t_ok "redis-server restarted on the same port" true
wait "$L1" "$L2"
read -r ok1 bad1 <"$T_DIR/load.$P1"
read -r ok2 bad2 <"$T_DIR/load.$P2"
t_ok "no request failed while Redis went away and came back ($((ok1 + ok2)) ok, $((bad1 + bad2)) failed)" test $((bad1 + bad2)) = 0 -a $((ok1 + ok2)) -gt 20
back=0
for _ in $(seq 100); do
  [[ $(curl -s "http://127.0.0.1:$P1/readyz" | json o.redis) == ok && $(curl -s "http://127.0.0.1:$P2/readyz" | json o.redis) == ok ]] && { back=1; break; }
  sleep 0.05
done
t_ok "both gateways return to Redis" test "$back" = 1
ok=0
for i in $(seq 6); do
  p=$P1
  ((i % 2)) && p=$P2
  [[ $(call "$p" "$RPM3") == 200 ]] && ok=$((ok + 1))
done
t_ok "after the restart limits are shared again (rpm 3: $ok of 6 admitted)" test "$ok" = 3
t_done
