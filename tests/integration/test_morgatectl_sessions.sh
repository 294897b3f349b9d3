#!/usr/bin/env bash
# morgatectl sessions on a real key store: rows written through ks_session_put (the gateway's
# path, via the ks_session_seed helper), then list (table, --json, --state), show (full id,
# prefix, local id, --json), not found, ambiguous prefix, bad input, and untrusted chain strings
# shown without control characters.
source "$(dirname "$0")/../support/lib.sh"

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
t_ok "help lists the sessions commands" grep -q "sessions list" <<<"$(ctl --help)"

t_done
