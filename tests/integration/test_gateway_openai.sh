#!/usr/bin/env bash
# The official openai npm client (openai@6, pinned) streaming through morgate to the mock backend:
# responses, streams, usage chunks, headers, typed errors and a mid-stream failure as the client
# library sees them.
source "$(dirname "$0")/../support/lib.sh"

export MORGATE_DB=$T_DIR/var/ks.db
unset MORGATE_PEPPER_FILE MORGATE_LISTEN MORGATE_REDIS_URL MORGATE_ADMIN_LISTEN
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_http() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.025; done; return 1; }
MPORT=$(free_port)
GPORT=$(free_port)
t_bg mock "$T_BUILD/tests/mock_openai" "$MPORT"
cat >"$T_DIR/gw.json" <<JSON
{"listen": "127.0.0.1:$GPORT", "keystore": {"path": "$MORGATE_DB"},
 "backends": [{"name": "mock", "base_url": "http://127.0.0.1:$MPORT/v1"}, {"name": "demo", "type": "demo"}],
 "models": [{"name": "mock-chat", "backend": "mock"}, {"name": "mock-fail", "backend": "mock"},
            {"name": "demo", "backend": "demo"}]}
JSON
"$T_BUILD/bin/morgatectl" init >/dev/null
"$T_BUILD/bin/morgatectl" tenant create acme --rpm 1000 >/dev/null
KEY=$("$T_BUILD/bin/morgatectl" key create --tenant acme | sed -n 's/^key: //p')
t_bg gw "$T_BUILD/bin/morgate" --config "$T_DIR/gw.json"
wait_http "http://127.0.0.1:$GPORT/healthz" && wait_http "http://127.0.0.1:$MPORT/stats" ||
  { t_fail "gateway and mock start" "$(cat "$T_DIR/gw.err")"; t_done; exit 1; }

cd "$T_ROOT" || exit 1
out=$(node tests/integration/openai_client.mjs "http://127.0.0.1:$GPORT/v1" "$KEY" 2>&1)
n=0
while IFS= read -r line; do
  case $line in
    PASS\ *) t_pass "openai client: ${line#PASS }"; n=$((n + 1)) ;;
    FAIL\ *) t_fail "openai client: ${line#FAIL }"; n=$((n + 1)) ;;
  esac
done <<<"$out"
t_ok "the client ran every check (9)" test "$n" = 9 || echo "# $out"
t_done
