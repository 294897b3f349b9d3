#!/usr/bin/env bash
# The chain client end to end through morgatectl on the Morpheus test chain (scripts/devnet):
# wallet files (new, import from stdin, address, balance, wrong passphrase), chain settings
# (--rpc failover past a dead URL, $MORGATE_RPC, a chain-id mismatch with --network), provider /
# model / bid registration and the market reads, decoded reverts as conflicts, a session opened
# with cast and read back, and every bad input with one line on stderr.
source "$(dirname "$0")/../support/lib.sh"
source "$T_ROOT/tests/support/chain.sh"

CTL=$T_BUILD/bin/morgatectl
ctl() { "$CTL" "$@"; }
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const o=JSON.parse(s);console.log(eval(process.argv[1]))})' "$1"; }
lc() { tr 'A-F' 'a-f' <<<"$1"; }

# scripts/devnet can lose a race with anvil creating its log file: retry once from a clean dir.
if ! chain_start 2>"$T_DIR/devnet.err"; then
  [[ -f $T_DIR/devnet/anvil.pid ]] && kill "$(cat "$T_DIR/devnet/anvil.pid")" 2>/dev/null
  rm -rf "$T_DIR/devnet"
  chain_start || { t_fail "devnet starts" "$(cat "$T_DIR/devnet.err")"; t_done; exit 1; }
fi
t_pass "devnet starts"
export MORGATE_WALLET_PASSPHRASE="correct horse battery staple"
unset MORGATE_RPC MORGATE_NETWORK MORGATE_DIAMOND MORGATE_MOR MORGATE_WALLET
DEAD=http://127.0.0.1:1
C=(--rpc "$DEAD" --rpc "$CHAIN_RPC" --diamond "$DIAMOND" --mor "$MOR")

# ---- wallet ----
W=$T_DIR/new.key
t_expect "wallet new" 0 "" ctl wallet new --wallet "$W" --weak-kdf
NEWADDR=$T_OUT
t_ok "wallet new prints an address" grep -qE '^0x[0-9a-fA-F]{40}$' <<<"$NEWADDR"
t_ok "key file is 0600" test "$(stat -c %a "$W")" = 600
t_expect "wallet new refuses to overwrite" 4 "exists already" ctl wallet new --wallet "$W" --weak-kdf
t_expect "wallet address needs no passphrase" 0 "" env -u MORGATE_WALLET_PASSPHRASE "$CTL" wallet address --wallet "$W"
t_ok "wallet address matches" test "$T_OUT" = "$NEWADDR"
P=$T_DIR/provider.key
t_run ctl --json wallet import --wallet "$P" --weak-kdf <<<"$CHAIN_KEY1"
t_ok "wallet import from stdin" test "$T_RC" = 0
t_ok "imported address is the key's" test "$(lc "$(json o.address <<<"$T_OUT")")" = "$(lc "$CHAIN_ADDR1")"
t_run ctl wallet import --wallet "$T_DIR/bad.key" <<<"nothex"
t_ok "wallet import rejects a bad key" test "$T_RC" = 2 -a ! -e "$T_DIR/bad.key"
t_expect "no private key on argv" 2 "never taken from the command line" ctl wallet import --wallet "$T_DIR/x.key" --private-key "$CHAIN_KEY1"
t_expect "wallet new needs a passphrase" 2 "MORGATE_WALLET_PASSPHRASE" env -u MORGATE_WALLET_PASSPHRASE "$CTL" wallet new --wallet "$T_DIR/np.key"
printf 'from a file\n' >"$T_DIR/pass"
t_expect "passphrase from a file" 0 "" env -u MORGATE_WALLET_PASSPHRASE "$CTL" wallet new --wallet "$T_DIR/pf.key" --weak-kdf --passphrase-file "$T_DIR/pass"
t_expect "wallet address of a missing file" 3 "cannot open wallet" ctl wallet address --wallet "$T_DIR/none.key"

# ---- chain settings ----
t_expect "balance with a dead RPC first (failover)" 0 "" ctl --json wallet balance --wallet "$P" "${C[@]}"
t_ok "balance shows ETH and MOR" test "$(json '[o.eth_wei.length>18, o.mor_wei, o.chain_id].join()' <<<"$T_OUT")" = "true,0,31337"
t_expect "balance of an address via MORGATE_RPC" 0 "" env MORGATE_RPC="$DEAD,$CHAIN_RPC" "$CTL" wallet balance "$CHAIN_ADDR0" --mor "$MOR"
t_ok "balance table" grep -q '^mor (wei)  *[1-9]' <<<"$T_OUT"
t_expect "only a dead RPC" 6 "cannot reach the chain" ctl market models --rpc "$DEAD" --diamond "$DIAMOND"
t_expect "chain id mismatch with --network" 6 "is on chain 31337, but network 'base' is chain 8453" ctl market models --rpc "$CHAIN_RPC" --network base
t_expect "chain id mismatch with --chain-id" 6 "is chain 84532" ctl market models --rpc "$CHAIN_RPC" --chain-id 84532 --diamond "$DIAMOND"
t_expect "unknown network" 2 "unknown network 'mainnet'" ctl market models --rpc "$CHAIN_RPC" --network mainnet
t_expect "no RPC" 2 "no RPC URL" ctl market models --diamond "$DIAMOND"
t_expect "no Diamond" 2 "no Diamond address" ctl market models --rpc "$CHAIN_RPC"
t_expect "bad Diamond checksum" 2 "checksum" ctl market models --rpc "$CHAIN_RPC" --diamond 0xE7f1725E7734CE288F8367e1Bb143E90bb3F0512
t_expect "writes need the MOR token" 2 "no MOR token address" ctl provider register --endpoint h:1 --wallet "$P" --rpc "$CHAIN_RPC" --diamond "$DIAMOND"
t_expect "wrong passphrase" 6 "wrong passphrase" env MORGATE_WALLET_PASSPHRASE=nope "$CTL" provider register --endpoint h:1 --wallet "$P" "${C[@]}"

# ---- registration ----
chain_fund "$CHAIN_ADDR1" 100000000000000000000
t_expect "provider register with too little stake is a decoded revert" 4 "ProviderStakeTooLow(1, 100000000000000000)" ctl provider register --endpoint 127.0.0.1:4444 --stake 1 --wallet "$P" "${C[@]}"
t_expect "provider register rejects a URL endpoint" 2 "without a scheme" ctl provider register --endpoint http://h:1 --wallet "$P" "${C[@]}"
t_expect "provider register" 0 "" ctl provider register --endpoint 127.0.0.1:4444 --wallet "$P" "${C[@]}"
t_expect "market provider" 0 "" ctl --json market provider "$CHAIN_ADDR1" "${C[@]}"
t_ok "provider read back" test "$(json '[o.endpoint,o.stake_wei,o.deleted].join()' <<<"$T_OUT")" = "127.0.0.1:4444,100000000000000000,false"
t_expect "market provider table" 0 "" ctl market provider "$CHAIN_ADDR1" "${C[@]}"
t_ok "table has the endpoint" grep -q '^endpoint  *127.0.0.1:4444' <<<"$T_OUT"
t_expect "unknown provider" 3 "no provider" ctl market provider "$CHAIN_ADDR3" "${C[@]}"
t_expect "model register" 0 "" ctl --json model register --name "llama-3-test" --tag llm --tag tee --wallet "$P" "${C[@]}"
MODEL=$(json o.model_id <<<"$T_OUT")
t_ok "model id is 32 bytes" grep -qE '^0x[0-9a-f]{64}$' <<<"$MODEL"
t_ok "model id is getModelId(owner, keccak(name))" test "$MODEL" = "$(chain_call "$DIAMOND" 'getModelId(address,bytes32)(bytes32)' "$CHAIN_ADDR1" "$("$CAST" keccak llama-3-test)")"
t_expect "market models" 0 "" ctl --json market models "${C[@]}"
t_ok "models list has it" test "$(json 'o.map(m=>[m.id,m.name,m.tags.join("+")].join()).join(";")' <<<"$T_OUT")" = "$MODEL,llama-3-test,llm+tee"
t_expect "market models table" 0 "" ctl market models "${C[@]}"
t_ok "table header and row" test "$(grep -c 'llama-3-test\|^ID  *NAME' <<<"$T_OUT")" = 2
t_expect "bid post with a bad price is a decoded revert" 4 "MarketplaceBidPricePerSecondInvalid" ctl bid post --model "$MODEL" --price 1 --wallet "$P" "${C[@]}"
t_expect "bid post" 0 "" ctl bid post --model "$MODEL" --price 10000000000000 --wallet "$P" "${C[@]}"
BID=$T_OUT
t_ok "bid id is getBidId(provider, model, 0)" test "$BID" = "$(chain_call "$DIAMOND" 'getBidId(address,bytes32,uint256)(bytes32)' "$CHAIN_ADDR1" "$MODEL" 0)"
t_expect "market bids" 0 "" ctl --json market bids "$MODEL" "${C[@]}"
t_ok "bids: one, with provider and 3 round trips" test "$(json '[o.bids.length,o.bids[0].bid_id,o.bids[0].provider_info.endpoint,o.bids[0].price_per_second_wei,o.round_trips].join()' <<<"$T_OUT")" = "1,$BID,127.0.0.1:4444,10000000000000,3"
t_expect "market bids table" 0 "" ctl market bids "$MODEL" "${C[@]}"
t_ok "bids table row" grep -q "^$BID .*127.0.0.1:4444" <<<"$T_OUT"
t_expect "market bids of an unknown model" 3 "no model" ctl market bids 0x"$(printf '%064d' 5)" "${C[@]}"
t_expect "market bids with a bad id" 2 "not 32 bytes of hex" ctl market bids 0x1234 "${C[@]}"

# ---- a session opened by the user with cast, read with morgatectl ----
chain_fund "$CHAIN_ADDR2" 100000000000000000000
chain_send "$CHAIN_KEY2" "$MOR" "approve(address,uint256)" "$DIAMOND" 100000000000000000000 >/dev/null
APPR=$(chain_approval "$BID" "$CHAIN_ADDR2")
SIG=$(chain_sign "$CHAIN_KEY1" "$APPR")
RCPT=$(chain_send "$CHAIN_KEY2" "$DIAMOND" "openSession(address,uint256,bool,bytes,bytes)" "$CHAIN_ADDR2" 2000000000000000000 false "$APPR" "$SIG")
SESSION=$(json 'o.logs.find(l=>l.topics[0]=="0x2bd7c890baf595977d256a6e784512c873ac58ba612b4895dbb7f784bfbf4839").topics[2]' <<<"$RCPT")
t_ok "session opened with cast" grep -qE '^0x[0-9a-f]{64}$' <<<"$SESSION"
t_expect "market session" 0 "" ctl --json market session "$SESSION" "${C[@]}"
t_ok "session read back" test "$(json '[o.status,o.user.toLowerCase(),o.bid_id,o.stake_wei,o.direct_payment].join()' <<<"$T_OUT")" = "active,$(lc "$CHAIN_ADDR2"),$BID,2000000000000000000,false"
t_expect "market session table" 0 "" ctl market session "$SESSION" "${C[@]}"
t_ok "session table status" grep -q '^status  *active' <<<"$T_OUT"
t_expect "unknown session" 3 "no session" ctl market session 0x"$(printf '%064d' 7)" "${C[@]}"

# ---- delete ----
t_expect "bid delete by another wallet is a decoded revert" 4 "InsufficientRightsForOperation" ctl bid delete "$BID" --wallet "$W" "${C[@]}"
t_expect "bid delete" 0 "" ctl bid delete "$BID" --wallet "$P" "${C[@]}"
t_expect "bid delete twice is a conflict" 4 "deleted already" ctl bid delete "$BID" --wallet "$P" "${C[@]}"
t_expect "bid delete of an unknown bid" 3 "no bid" ctl bid delete 0x"$(printf '%064d' 9)" --wallet "$P" "${C[@]}"
t_ok "no bids left" test "$(ctl --json market bids "$MODEL" "${C[@]}" | json o.bids.length)" = 0
t_expect "unknown market subcommand" 2 "unknown market subcommand" ctl market nope "${C[@]}"
t_expect "help lists the chain commands" 0 "" ctl --help
t_ok "help has market bids" grep -q 'market bids MODEL_ID' <<<"$T_OUT"
t_done
