#!/usr/bin/env bash
# morgate's connection soft limit (a clean 503 instead of silent queueing), the separate admin
# listener, environment overrides, `morgatectl config check`, and refusing to start on a bad
# config with the field named.
source "$(dirname "$0")/../support/lib.sh"

export MORGATE_DB=$T_DIR/var/ks.db
unset MORGATE_PEPPER_FILE MORGATE_LISTEN MORGATE_REDIS_URL MORGATE_ADMIN_LISTEN
CTL=$T_BUILD/bin/morgatectl
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_http() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.025; done; return 1; }
GPORT=$(free_port)
APORT=$(free_port)
"$CTL" init >/dev/null
"$CTL" tenant create acme >/dev/null
KEY=$("$CTL" key create --tenant acme | sed -n 's/^key: //p')

# ---- config check ----
cat >"$T_DIR/good.json" <<JSON
{"listen": "127.0.0.1:1", "limits": {"soft_connections": 3, "max_connections": 10}}
JSON
t_expect "config check accepts a good file" 0 "" "$CTL" config check "$T_DIR/good.json"
t_expect "config check accepts the shipped example" 0 "" "$CTL" config check "$T_ROOT/config/morgate.example.json"
printf '{"backends":[{"name":"b","base_url":"ftp://x"}],"models":[{"name":"m","backend":"b"}]}' >"$T_DIR/bad.json"
t_expect "config check names the bad field" 1 "backends[0].base_url: must start with http://" "$CTL" config check "$T_DIR/bad.json"
printf '{\n  "listen": "127.0.0.1:1",\n  "threads": ,\n}' >"$T_DIR/syntax.json"
t_expect "config check points at a syntax error's line" 1 "line 3" "$CTL" config check "$T_DIR/syntax.json"
t_expect "config check on a missing file" 3 "cannot read config" "$CTL" config check "$T_DIR/nope.json"
t_expect "morgate refuses to start on a bad config, naming the field" 1 "backends[0].base_url" \
  "$T_BUILD/bin/morgate" --config "$T_DIR/bad.json"
t_expect "morgate refuses a bad environment override" 1 "MORGATE_THREADS" \
  env MORGATE_THREADS=lots "$T_BUILD/bin/morgate" --config "$T_DIR/good.json"

# ---- soft connection limit and the admin listener, configured through the environment ----
MORGATE_LISTEN=127.0.0.1:$GPORT MORGATE_ADMIN_LISTEN=127.0.0.1:$APORT \
  t_bg gw "$T_BUILD/bin/morgate" --config "$T_DIR/good.json"
wait_http "http://127.0.0.1:$APORT/healthz" || { t_fail "gateway starts" "$(cat "$T_DIR/gw.err")"; t_done; exit 1; }
t_pass "MORGATE_LISTEN and MORGATE_ADMIN_LISTEN override the file"
t_ok "metrics on the admin listener" bash -c "curl -s http://127.0.0.1:$APORT/metrics | grep -q '^morgate_connections '"
chat='{"model":"demo","messages":[]}'
exec 5<>"/dev/tcp/127.0.0.1/$GPORT" 6<>"/dev/tcp/127.0.0.1/$GPORT" 7<>"/dev/tcp/127.0.0.1/$GPORT" 8<>"/dev/tcp/127.0.0.1/$GPORT"
sleep 0.2
out=$(curl -s -i "http://127.0.0.1:$GPORT/v1/chat/completions" -H "Authorization: Bearer $KEY" -d "$chat")
t_ok "over the soft connection limit: a clean 503 with Retry-After, not a silent queue" \
  bash -c "grep -q '^HTTP/1.1 503' <<<'$out' && grep -qi '^retry-after: 1' <<<'$out' && grep -q '\"code\":\"overloaded\"' <<<'$out'"
exec 5<&- 6<&- 7<&- 8<&-
sleep 0.2
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GPORT/v1/chat/completions" -H "Authorization: Bearer $KEY" -d "$chat")
t_ok "below the limit again: served" test "$code" = 200
t_ok "rejections are counted" bash -c "curl -s http://127.0.0.1:$APORT/metrics | grep -q '^morgate_connections_rejected_total [1-9]'"
t_done
