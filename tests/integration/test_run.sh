#!/usr/bin/env bash
# scripts/run (what `make run` calls) end to end, in a scratch directory and on a free port: the
# whole local marketplace comes up with no internet (redis-server, anvil with the test contracts,
# a seeded provider on morgate-provider's demo backend, the gateway's wallet), the printed curl
# command and `openai` client example stream an answer that crossed an on-chain session and the
# encrypted link, the session shows in `morgatectl sessions list`, and after SIGINT to the
# gateway every process the script started is gone. Then the gateway-only --demo mode.
source "$(dirname "$0")/../support/lib.sh"

CTL=$T_BUILD/bin/morgatectl
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
RD=$T_DIR/var
LP=$(free_port)
export MORGATE_RUN_DIR=$RD MORGATE_LISTEN=127.0.0.1:$LP
unset MORGATE_DB MORGATE_PEPPER_FILE
# settings for a real chain in the caller's environment must not leak into the local run (if
# they did, the gateway would reach no chain and the streams below would fail)
export MORGATE_RPC=http://127.0.0.1:9 MORGATE_WALLET_PASSPHRASE=wrong

# The run's live processes: those whose command line names the scratch directory (gateway,
# provider), the watchdogs by the gateway's PID they watch, redis by its port (it rewrites its title) and anvil by its pid file.
ours() {
  local p st cmd
  for p in /proc/[0-9]*; do
    st=$(awk '{print $3}' "$p/stat" 2>/dev/null) || continue
    [[ $st == Z ]] && continue
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    if [[ $cmd == *"$RD"* || $cmd == *"watch $RUN_PID "* ||
      (-n ${RURL:-} && $cmd == "redis-server ${RURL#redis://}"*) ]]; then
      echo "${p#/proc/}"
    fi
  done
  if [[ -f $RD/devnet/anvil.pid ]]; then
    p=$(cat "$RD/devnet/anvil.pid")
    st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || return 0
    [[ $st != Z ]] && echo "$p"
  fi
  return 0
}

start_run() { # LOG_NAME [ARGS]: start scripts/run in its own session; RUN_PID is the gateway's
  local name=$1
  shift
  setsid "$T_ROOT/scripts/run" "$@" "$T_BUILD" >"$T_DIR/$name.out" 2>"$T_DIR/$name.err" &
  RUN_PID=$!
  T_PIDS+=("$RUN_PID")
}
wait_up() { # OUT_FILE SECONDS: the key is printed and the gateway is ready (/readyz: the catalogue is in)
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    grep -q "^demo key:" "$1" 2>/dev/null && curl -sf "http://127.0.0.1:$LP/readyz" >/dev/null && return 0
    kill -0 "$RUN_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

start_run market
if ! wait_up "$T_DIR/market.out" 60; then
  t_fail "make run brings the marketplace up" "$(cat "$T_DIR/market.out" "$T_DIR/market.err")"
  t_done
  exit 1
fi
t_pass "make run brings the marketplace up"
OUT=$(cat "$T_DIR/market.out")
KEY=$(sed -n 's/^demo key:   //p' <<<"$OUT")
t_ok "a demo key is printed" test "${#KEY}" = 69
RURL=$(sed -n 's/^redis: *\(redis:[^ ]*\).*/\1/p' <<<"$OUT")
t_ok "redis is reported" test -n "$RURL"
t_ok "the chain is reported" grep -q '^chain: *anvil http://127.0.0.1:[0-9]* (chain id 31337)' <<<"$OUT"
t_ok "the provider is reported" grep -q '^provider: *0x70997970C51812dc3A010C7d01b50e0d17dc79C8 at 127.0.0.1:[0-9]*: model morpheus-demo' <<<"$OUT"
t_ok "the gateway wallet is anvil account 2" grep -q '^wallet: *0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC' <<<"$OUT"
t_ok "wallet passphrase file is private" test "$(stat -c %a "$RD/wallet.pass")" = 600
t_ok "the config has the marketplace section" node -e '
  const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const m = c.marketplace;
  if (!(m.chain_id === 31337 && m.rpc[0].startsWith("http://127.0.0.1:") && m.aliases.demo === "morpheus-demo" &&
        m.models["morpheus-demo"].min_idle === 1 && m.wallet.endsWith("/wallet.json"))) process.exit(1)' "$RD/morgate.json"

# the printed curl command, as printed (the stream)
CURL=$(sed -n '/^  curl -N/,/-d /p' <<<"$OUT")
t_ok "a streaming curl command is printed" grep -q '"stream":true' <<<"$CURL"
t_run bash -c "$CURL --max-time 60 -s"
n=$(grep -c '^data: {' <<<"$T_OUT")
text=$(grep '^data: {' <<<"$T_OUT" | sed 's/^data: //' | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(s.trim().split("\n").map(l=>JSON.parse(l).choices?.[0]?.delta?.content||"").join("")))')
if [[ $T_RC -eq 0 && $n -ge 20 && $T_OUT == *'data: [DONE]'* && $text == "You said: hello. This answer came from the morgate-provider demo backend"* ]]; then
  t_pass "the printed curl command streams the provider's answer ($n chunks)"
else t_fail "printed curl" "rc $T_RC" "${T_OUT:0:600}" "$T_ERR"; fi

# the printed openai client example, as printed
NODE=$(sed -n '/^  node -e/,/console.log()})()"/p' <<<"$OUT")
t_ok "an openai client example is printed" grep -q "baseURL:'http://127.0.0.1:$LP/v1'" <<<"$NODE"
t_run bash -c "cd '$T_ROOT' && $NODE"
if [[ $T_RC -eq 0 && $T_OUT == "You said: hello. This answer came from the morgate-provider demo backend"*"no network access." ]]; then
  t_pass "the printed openai example streams the answer"
else t_fail "printed openai example" "rc $T_RC" "$T_OUT" "$T_ERR"; fi

t_run env MORGATE_DB="$RD/morgate.db" "$CTL" --json sessions list --state open
t_ok "the gateway's open sessions are in the key store" test "$(node -e 'const a=JSON.parse(process.argv[1]);console.log(a.length>=1&&a.every(s=>s.model==="morpheus-demo"&&/^0x[0-9a-f]{64}$/.test(s.id)))' "$T_OUT")" = true

before=$(ours | sort -u | wc -l)
t_ok "redis, anvil, the provider, the gateway and the watchdogs run" test "$before" -ge 6
kill -INT "$RUN_PID"
gone=0
for _ in $(seq 1 150); do
  [[ -z $(ours) ]] && gone=1 && break
  sleep 0.1
done
if ((gone)); then t_pass "SIGINT to the gateway stops every process of the run"; else t_fail "processes left" "$(ours | xargs -r ps -o pid,cmd -p)"; fi
wait "$RUN_PID" 2>/dev/null
t_ok "the gateway drained and exited 0" test $? = 0

# a key file in var/wallet.json that is not make run's account is never replaced: the run stops,
# says so, and leaves nothing running
mv "$RD/wallet.json" "$T_DIR/wallet.anvil"
printf '%s\n' 0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6 |
  MORGATE_WALLET_PASSPHRASE=pw "$CTL" wallet import --wallet "$RD/wallet.json" --weak-kdf >/dev/null
sum=$(sha256sum "$RD/wallet.json")
start_run foreign
wait "$RUN_PID" 2>/dev/null
rc=$?
t_ok "a foreign wallet stops the run" test "$rc" != 0
t_ok "and says why" grep -q "wallet.json holds another key (0x90F79bf6EB2c4f870365E785982E1f101E93b906)" "$T_DIR/foreign.err"
t_ok "the foreign wallet is untouched" test "$(sha256sum "$RD/wallet.json")" = "$sum"
RURL=$(sed -n 's/^redis: *\(redis:[^ ]*\).*/\1/p' "$T_DIR/foreign.out")
t_ok "it had started redis" test -n "$RURL"
gone=0
for _ in $(seq 1 100); do
  [[ -z $(ours) ]] && gone=1 && break
  sleep 0.1
done
t_ok "a failed start leaves nothing running" test $gone = 1
mv "$T_DIR/wallet.anvil" "$RD/wallet.json"

# --demo: the gateway alone, its own demo model, no chain
start_run demo --demo
if wait_up "$T_DIR/demo.out" 20; then
  KEY=$(sed -n 's/^demo key:   //p' "$T_DIR/demo.out")
  t_run curl -s --max-time 20 "http://127.0.0.1:$LP/v1/chat/completions" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d '{"model":"demo","messages":[{"role":"user","content":"hi"}]}'
  [[ $T_OUT == *"morgate's built-in demo model"* ]] && t_pass "--demo: the gateway's own demo model answers" || t_fail "--demo answer" "$T_OUT"
  t_ok "--demo starts nothing but the gateway" test -z "$(ours)" -a -d "/proc/$RUN_PID"
  kill -INT "$RUN_PID"
  wait "$RUN_PID" 2>/dev/null
  t_ok "--demo exits 0 on SIGINT" test $? = 0
else
  t_fail "--demo starts" "$(cat "$T_DIR/demo.err")"
fi

t_done
