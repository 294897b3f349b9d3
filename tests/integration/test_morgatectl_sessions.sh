#!/usr/bin/env bash
# morgatectl sessions on a real key store: rows written through ks_session_put (the gateway's
# path, via the ks_session_seed helper), then list (table, --json, --state), show (full id,
# prefix, local id, --json), not found, ambiguous prefix, bad input, and untrusted chain strings
# shown without control characters. Then `sessions close` on real sessions of the devnet (anvil
# with the test contracts): one with a live morgate-provider (its demo backend) answering
# session.report, so the close carries the provider's receipt, and one whose provider is gone,
# refused without --dispute-ok and closed as a dispute with it; the chain's closedAt and
# closeout type and the row's state are checked.
source "$(dirname "$0")/../support/lib.sh"
source "$(dirname "$0")/../support/chain.sh"

CTL=$T_BUILD/bin/morgatectl
SEED=$T_BUILD/tests/ks_session_seed
DB=$T_DIR/var/ks.db
export MORGATE_DB=$DB
unset MORGATE_PEPPER_FILE
ctl() { "$CTL" "$@"; }
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const o=JSON.parse(s);console.log(eval(process.argv[1]))})' "$1"; }
h64() { printf '0x%s' "$(printf "$1%.0s" $(seq 32))"; } # 0x + the 2-digit byte 32 times

t_expect "sessions list without a store is not found" 3 "" ctl sessions list
ctl init >/dev/null

t_expect "empty list" 0 "" ctl sessions list
t_ok "empty list has just the header" test "$(ctl sessions list | wc -l)" = 1
t_ok "empty list json is []" test "$(ctl --json sessions list)" = "[]"

PROV=0x00000000000000000000000000000000000000aa
KEY=0x04$(printf 'c%.0s' $(seq 128))
A=$(h64 ab)
B=${A:0:64}cd # shares 62 digits with A
C=$(h64 12)
seed() { "$SEED" "$DB" "$@"; }
t_ok "seed a closed session" seed 101 id="$A" model=llama-3.3-70b model_id="$(h64 11)" bid_id="$(h64 22)" \
  provider=$PROV endpoint=127.0.0.1:3333 provider_key="$KEY" stake=2500000000000000000 price=10000000000 \
  opened_at=1790000000 ends_at=1790000600 closed_at=1790000610 state=closed requests=7 failures=1 \
  open_tx="$(h64 33)" close_tx="$(h64 44)"
t_ok "seed an open session" seed 102 id="$B" model=mistral provider=$PROV stake=1000000000000000 \
  opened_at=1790001000 ends_at=1790001600 state=open requests=2
t_ok "seed a session still opening (uint64 local id above INT64_MAX)" seed 18446744073709551000 model=mistral \
  state=opening updated_at=1790002000000
# bytes >= 0x80 are stored as they come (router-core may cut a chain string inside a UTF-8
# sequence); here a C1 control (CSI, an escape sequence on many terminals) and a stray byte
t_ok "seed a retired session with hostile strings" seed 104 id="$C" model=$'evil\xc2\x9b31mname' \
  endpoint=$'h\xffost:1' state=retired opened_at=1789999000
t_expect "the store refuses a C0 control character" 1 "control byte 0x1b" seed 105 model=$'evil\x1b[31m'
t_expect "the store refuses a bad row" 1 "state" seed 105 state=opened
t_expect "the store refuses a non-hex id" 1 "'id'" seed 105 id=0xzz

# ---- list ----
t_expect "list" 0 "" ctl sessions list
LIST=$T_OUT
t_ok "list has a header" grep -q '^ID *MODEL *PROVIDER *STATE *STAKE_MOR *OPENED *ENDS *REQUESTS$' <<<"$LIST"
t_ok "list is newest first" test "$(awk 'NR>1{print $1}' <<<"$LIST" | tr '\n' ' ')" = "18446744073709551000 ${B:0:10} ${A:0:10} ${C:0:10} "
t_ok "list shows stake in MOR, provider short, times, requests" \
  grep -q "^${A:0:10} *llama-3.3-70b *0x0000...00aa *closed *2.5 *2026-09-21T14:13:20Z *2026-09-21T14:23:20Z *7$" <<<"$LIST"
t_ok "small stakes keep their digits" grep -q "^${B:0:10} .* 0.001 " <<<"$LIST"
t_ok "no control characters reach the terminal" test "$(printf '%s' "$LIST" | tr -d '\n' | LC_ALL=C grep -ac $'[[:cntrl:]\x80-\x9f]')" = 0
t_ok "the model with an escape is shown with '?'" grep -q 'evil??31mname' <<<"$LIST"

t_expect "list --state open" 0 "" ctl sessions list --state open
t_ok "only the open one" test "$(awk 'NR>1{print $1}' <<<"$T_OUT")" = "${B:0:10}"
t_expect "list --state=closed --json" 0 "" ctl --json sessions list --state=closed
t_ok "json filter and fields" test "$(json 'o.map(s=>[s.id,s.state,s.stake_mor,s.stake_wei,s.requests,s.failures,s.dispute].join()).join(";")' <<<"$T_OUT")" = "$A,closed,2.5,2500000000000000000,7,1,false"
t_expect "list --json of everything" 0 "" ctl --json sessions list
ALL=$T_OUT
t_ok "json has all four, newest first" test "$(json 'o.map(s=>s.local_id).join()' <<<"$ALL")" = "18446744073709551000,102,101,104"
t_ok "json local ids are strings (no precision loss in JavaScript)" test "$(json 'typeof o[0].local_id' <<<"$ALL")" = string
t_ok "json: opening row has null id and times" test "$(json '[o[0].id,o[0].opened_at,o[0].stake_mor].join("|")' <<<"$ALL")" = "||"
t_ok "json: untrusted strings are sanitized" test "$(json 'o[3].model+" "+o[3].endpoint' <<<"$ALL")" = 'evil??31mname h?ost:1'
t_expect "unknown state is a usage error" 2 "unknown session state 'bogus'" ctl sessions list --state bogus
t_expect "--state needs a value" 2 "needs a value" ctl sessions list --state
t_expect "--state given twice" 2 "twice" ctl sessions list --state open --state closed
t_expect "list takes no positional" 2 "unexpected argument" ctl sessions list extra

# ---- show ----
t_expect "show by full id" 0 "" ctl sessions show "$A"
SHOW=$T_OUT
for f in "session *$A" "local id *101" "model *llama-3.3-70b" "model id *$(h64 11)" "bid *$(h64 22)" \
  "provider *$PROV" "endpoint *127.0.0.1:3333" "provider key *$KEY" \
  "stake *2.5 MOR (2500000000000000000 wei)" "price *10000000000 wei per second" \
  "opened *2026-09-21T14:13:20Z" "ends *2026-09-21T14:23:20Z" "closed *2026-09-21T14:23:30Z" \
  "state *closed" "closeout *provider receipt" "requests *7 served, 1 failed" "open tx *$(h64 33)" \
  "close tx *$(h64 44)"; do
  t_ok "show has '${f%% \**}'" grep -q "^$f\$" <<<"$SHOW"
done
t_expect "show by unique prefix" 0 "" ctl sessions show "${C:0:8}"
t_ok "prefix found the right one" grep -q "^session *$C$" <<<"$T_OUT"
t_expect "show by prefix in upper case" 0 "" ctl sessions show "0X121212"
t_expect "show by local id" 0 "" ctl --json sessions show 102
t_ok "show json by local id" test "$(json '[o.id,o.model,o.state,o.requests,o.stake_mor].join()' <<<"$T_OUT")" = "$B,mistral,open,2,0.001"
t_expect "show the opening one by its uint64 local id" 0 "" ctl --json sessions show 18446744073709551000
t_ok "opening row json" test "$(json '[o.local_id,o.state,o.id,o.updated_at].join()' <<<"$T_OUT")" = "18446744073709551000,opening,,2026-09-21T14:46:40.000Z"
t_expect "show json has every field" 0 "" ctl --json sessions show "$A"
t_ok "json keys" test "$(json 'Object.keys(o).join()' <<<"$T_OUT")" = "bid_id,close_tx,closed_at,dispute,endpoint,ends_at,failures,id,local_id,model,model_id,open_tx,opened_at,price_wei_per_second,provider,provider_key,requests,stake_mor,stake_wei,state,updated_at"
t_expect "ambiguous prefix is a conflict" 4 "several sessions" ctl sessions show "${A:0:12}"
t_expect "unknown id is not found" 3 "not found" ctl sessions show "$(h64 ef)"
t_expect "unknown prefix is not found" 3 "not found" ctl sessions show 0xefefef
t_expect "unknown local id is not found" 3 "not found" ctl sessions show 999
t_expect "a short prefix is refused" 2 "6 to 64 hex digits" ctl sessions show 0xabab
t_expect "non-hex is refused" 2 "non-hex" ctl sessions show 0xababzz
t_expect "a name is refused" 2 "is not a session id" ctl sessions show llama
t_expect "show needs an id" 2 "needs a session ID" ctl sessions show
t_expect "show takes one id" 2 "one session ID" ctl sessions show 101 102
t_expect "unknown subcommand" 2 "unknown sessions subcommand" ctl sessions open
t_expect "sessions needs a subcommand" 2 "needs a subcommand" ctl sessions
t_ok "help lists the sessions commands" grep -q "sessions close ID \[--dispute-ok\]" <<<"$(ctl --help)"

# ---- close: argument and state checks before any chain access ----
t_expect "close needs an id first" 2 "needs a session ID" ctl sessions close --dispute-ok
t_expect "close of an unknown session" 3 "not found" ctl sessions close 0xefefef --rpc http://127.0.0.1:9
t_expect "close of a session still opening" 4 "no session on chain" ctl sessions close 18446744073709551000 --rpc http://127.0.0.1:9
t_expect "close of a closed session" 4 "closed already" ctl sessions close "$A" --rpc http://127.0.0.1:9
t_expect "close: --dispute-ok twice" 2 "given twice" ctl sessions close "$B" --dispute-ok --dispute-ok
t_expect "close: only chain options" 2 "only the chain options" ctl sessions close "$B" --price 5 --rpc http://127.0.0.1:9
t_expect "close: no RPC" 2 "no RPC URL" env -u MORGATE_RPC "$CTL" sessions close "$B"
t_expect "close: node unreachable" 6 "cannot reach the chain" ctl sessions close "$B" --rpc http://127.0.0.1:9 --diamond 0x0000000000000000000000000000000000000001 --mor 0x0000000000000000000000000000000000000002

# ---- close on a real chain ----
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
if ! chain_start; then
  t_fail "devnet starts"
  t_done
  exit 1
fi
PPORT=$(free_port)
MPORT=$(free_port)
EP=127.0.0.1:$PPORT
chain_seed_provider "$EP" --model sessions-demo >/dev/null || t_fail "seed provider"
UK=$CHAIN_KEY2
PK=$CHAIN_KEY1
cat >"$T_DIR/models.json" <<JSON
{"models":[{"modelId":"$SEED_MODEL","modelName":"morpheus-demo","apiType":"demo","parameters":{"chunkMs":"0"}}]}
JSON
echo pw >"$T_DIR/pass"
chmod 600 "$T_DIR/pass"
printf '%s\n' "$PK" | MORGATE_WALLET_PASSPHRASE=pw ctl wallet import --wallet "$T_DIR/provider.key" --weak-kdf >/dev/null
printf '%s\n' "$UK" | MORGATE_WALLET_PASSPHRASE=pw ctl wallet import --wallet "$T_DIR/gateway.key" --weak-kdf >/dev/null
cat >"$T_DIR/provider.json" <<JSON
{"listen":"$EP","admin_listen":"127.0.0.1:$MPORT","models_config":"models.json",
 "wallet":"provider.key","passphrase_file":"pass","rpc":"$CHAIN_RPC","chain_id":$CHAIN_ID,
 "diamond":"$DIAMOND","mor":"$MOR","db":"provider.db","log_level":"info"}
JSON
t_bg provider "$T_BUILD/bin/morgate-provider" --config "$T_DIR/provider.json"
up=0
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$MPORT/healthz" >/dev/null && up=1 && break
  sleep 0.05
done
t_ok "provider with the demo backend is up" test $up = 1

STAKE=$(chain_stake_for 600 "$SEED_PRICE")
SID1=$(chain_open_session "$UK" "$PK" "$SEED_BID" "$STAKE")
SID2=$(chain_open_session "$UK" "$PK" "$SEED_BID" "$STAKE")
t_ok "two sessions opened on chain" test "${SID1:0:2}${SID2:0:2}" = 0x0x
# The gateway's part before a close: a handshake (which gives the provider key it stores) and
# one prompt, answered by the demo backend; a provider reports only on sessions it served.
L=$T_BUILD/tests/pv_link
t_run "$L" request "$EP" "$UK" "$SEED_BID"
PPUB=$(sed -E 's/.*provider_pub=(0x[0-9a-f]+).*/\1/' <<<"$T_OUT")
t_ok "handshake with the provider" test "${#PPUB}" = 132
printf '%s' '{"model":"x","stream":true,"messages":[{"role":"user","content":"close me"}]}' >"$T_DIR/stream.json"
t_run "$L" prompt "$EP" "$UK" "$PPUB" "$SID1" "$T_DIR/stream.json"
t_ok "a prompt on the first session, answered by the demo backend" \
  test "$T_RC" = 0 -a "$(tail -1 <<<"$T_OUT")" = DONE -a "$(grep -c '"content":" me."' <<<"$T_OUT")" = 1
NOW=$(chain_now)
row() { # LOCAL SID ENDPOINT [FIELD=VALUE]
  seed "$1" id="$2" model=sessions-demo model_id="$SEED_MODEL" bid_id="$SEED_BID" \
    provider="${SEED_PROVIDER,,}" endpoint="$3" stake="$STAKE" price="$SEED_PRICE" \
    opened_at="$NOW" ends_at=$((NOW + 600)) state=open requests=1 "${@:4}"
}
DEAD=127.0.0.1:$(free_port) # nothing listens there: the provider is gone
# no provider key in this row: the close learns it with a handshake first (and records it)
t_ok "row for the first session" row 301 "$SID1" "$EP"
t_ok "row for the second, its provider gone" row 302 "$SID2" "$DEAD"
CHAIN_OPTS=(--rpc "$CHAIN_RPC" --chain-id "$CHAIN_ID" --diamond "$DIAMOND" --mor "$MOR")
onchain() { ctl --json market session "$1" "${CHAIN_OPTS[@]}" | json "$2"; }

t_expect "close: wrong passphrase" 6 "wrong passphrase" env MORGATE_WALLET_PASSPHRASE=nope "$CTL" sessions close "$SID1" "${CHAIN_OPTS[@]}" --wallet "$T_DIR/gateway.key"
t_expect "close: no wallet" 2 "needs a wallet" env -u MORGATE_WALLET "$CTL" sessions close "$SID1" "${CHAIN_OPTS[@]}" --passphrase-file "$T_DIR/pass"
t_ok "still open on chain after the refusals" test "$(onchain "$SID1" o.status)" = active

# with the provider's receipt; settings from the environment this time, as for the chain commands
t_expect "close with the provider's receipt" 0 "" env MORGATE_RPC="$CHAIN_RPC" MORGATE_DIAMOND="$DIAMOND" \
  MORGATE_MOR="$MOR" MORGATE_WALLET="$T_DIR/gateway.key" MORGATE_WALLET_PASSPHRASE=pw "$CTL" sessions close "${SID1:0:12}"
t_ok "says how it was closed" grep -q "^closed session $SID1 at .* (provider receipt)" <<<"$T_OUT"
t_ok "closed on chain, not disputed" test "$(onchain "$SID1" '[o.status, o.disputed, o.closed_at !== null].join()')" = "closed,false,true"
t_expect "row updated" 0 "" ctl --json sessions show "$SID1"
t_ok "row: closed, no dispute, closed_at set" test "$(json '[o.state, o.dispute, o.closed_at !== null, o.requests].join()' <<<"$T_OUT")" = "closed,false,true,1"
t_ok "row's closed_at is the chain's" test "$(json o.closed_at <<<"$T_OUT")" = "$(onchain "$SID1" o.closed_at)"
t_ok "row: the provider key learned by the close is recorded" test "$(json o.provider_key <<<"$T_OUT")" = "$PPUB"

# the provider is gone: no receipt; refused without --dispute-ok, a dispute with it
t_expect "close without a provider and without --dispute-ok" 6 "--dispute-ok" ctl sessions close "$SID2" "${CHAIN_OPTS[@]}" --wallet "$T_DIR/gateway.key" --passphrase-file "$T_DIR/pass"
t_ok "still open on chain" test "$(onchain "$SID2" o.status)" = active
t_ok "row still open" test "$(ctl --json sessions show 302 | json o.state)" = open
t_expect "close --dispute-ok" 0 "" ctl --json sessions close 302 --dispute-ok "${CHAIN_OPTS[@]}" --wallet "$T_DIR/gateway.key" --passphrase-file "$T_DIR/pass"
t_ok "json answer: closed as a dispute" test "$(json '[o.id, o.state, o.dispute].join()' <<<"$T_OUT")" = "$SID2,closed,true"
t_ok "closedAt on chain, closeout disputed" test "$(onchain "$SID2" '[o.status, o.disputed, o.closed_at !== null].join()')" = "closed,true,true"
t_ok "row: closed with a dispute" test "$(ctl --json sessions show "$SID2" | json '[o.state, o.dispute, o.closed_at === null].join()')" = "closed,true,false"
t_ok "show says dispute" grep -q "^closeout *dispute" <<<"$(ctl sessions show "$SID2")"
t_expect "closing it again is a conflict" 4 "closed already" ctl sessions close "$SID2" --dispute-ok "${CHAIN_OPTS[@]}" --wallet "$T_DIR/gateway.key" --passphrase-file "$T_DIR/pass"
t_ok "the passphrase never shows in output" test "$(grep -c 'pw$' "$T_DIR/.out" "$T_DIR/.err" | awk -F: '{s+=$2} END {print s}')" = 0

t_done
