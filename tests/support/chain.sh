# shellcheck shell=bash
# tests/support/chain.sh: a Morpheus test chain for integration tests (bash). Source it after
# tests/support/lib.sh. The chain is scripts/devnet (anvil + tests/chain/*.sol); see the top of
# that script for the contracts and the devnet JSON. Function names and variables below are
# stable: other tests depend on them.
#
#   chain_start [--chain-id N] [--block-time S]
#       Starts the test's devnet in $T_DIR/devnet (one per test script; anvil on 127.0.0.1, a
#       free port; chain id 31337 by default; transactions mined at once plus an empty block
#       every S s, default 1), registers the anvil PID in T_PIDS (stopped by PID at exit) and
#       exports:
#         CHAIN_RPC   http://127.0.0.1:PORT        CHAIN_ID    chain id (decimal)
#         CHAIN_DIR   state dir (devnet.json)      CHAIN_PID   anvil PID
#         DIAMOND     Morpheus test Diamond        MOR         MOR test token
#         MULTICALL3  0xcA11bde05977b3631167028862bE2a173976CA11 (aggregate only)
#         CHAIN_ADDR0..3 / CHAIN_KEY0..3   anvil accounts 0..3 (address / 0x private key)
#         CHAIN_FUND_ADDR / CHAIN_FUND_KEY the Diamond's funding account (anvil account 9)
#         CAST        the pinned cast binary
#       The chain also stops by itself when the test script ($$) exits, even if chain_start ran
#       in a subshell. Account 0 deployed everything, owns the Diamond and holds the MOR supply.
#   chain_stop              stop the devnet now (otherwise it is stopped at exit)
#   chain_seed_provider ENDPOINT [--provider I] [--user I] [--price WEI] [--model NAME]
#       scripts/devnet seed: provider account I (default 1) registered with ENDPOINT
#       ("host:port"), a model and a bid; user account I (default 2) gets 1000 MOR. Exports
#       SEED_PROVIDER SEED_MODEL SEED_BASE_MODEL SEED_BID SEED_PRICE SEED_USER.
#   chain_call TO SIG [ARGS...]          cast call (prints decoded outputs if SIG has "(…)(…)")
#   chain_send KEY TO SIG [ARGS...]      cast send from KEY, waits for the receipt; receipt JSON
#                                        on stdout; on a revert, cast's error on stderr, rc 1
#   chain_fund ADDR WEI                  MOR from account 0 to ADDR
#   chain_time_travel SECONDS            advance the chain clock and mine a block
#   chain_set_time TS                    mine a block at unix time TS (later blocks go on from it)
#   chain_now                            timestamp of the latest block (seconds)
#   chain_approval BIDID USER [TS_MS] [CHAINID]
#       the provider approval abi(bytes32,uint256,address,uint128) (§3.6 step 2); TS_MS defaults
#       to now in milliseconds, CHAINID to $CHAIN_ID
#   chain_receipt SESSIONID [TS_MS] [CHAINID] [TPS TTFT IN OUT]
#       the 7-word session receipt of §3.7 (defaults 42500 350 120 800)
#   chain_sign KEY HEXDATA               EIP-191 signature (v 27/28) of keccak256(HEXDATA)
#   chain_stake_for SECONDS PRICE        the stake buying SECONDS at PRICE wei/s now, from the live
#                                        views (§3.6.1): totalMORSupply × PRICE × SECONDS /
#                                        getTodaysBudget, truncated
#   chain_open_session USER_KEY PROVIDER_KEY BIDID AMOUNT [DIRECT]
#       increaseAllowance(Diamond, AMOUNT) from the user, then openSession with an approval
#       signed by PROVIDER_KEY; prints the session id (SessionOpened topics[2])
#   chain_close_session USER_KEY SIGNER_KEY SESSIONID
#       closeSession with a receipt signed by SIGNER_KEY (the provider: normal close; the user:
#       dispute)
#   chain_revert_name TEXT               the revert in cast's error TEXT, by name: a custom
#                                        error's signature ("SessionTooShort()") or, for
#                                        Error(string), the reason; empty if none
set -uo pipefail

CAST=${CAST:-$T_ROOT/node_modules/@foundry-rs/cast-linux-amd64/bin/cast}
CHAIN_SELECTORS=$T_ROOT/tests/chain/build/selectors.json

chain_start() {
  local json
  # --watch $$: even if this runs in a subshell (and T_PIDS is lost), the chain stops when the
  # test script exits.
  json=$("$T_ROOT/scripts/devnet" start --state-dir "$T_DIR/devnet" --watch $$ "$@") || return 1
  CHAIN_DIR=$T_DIR/devnet
  eval "$(node -e '
    const j = JSON.parse(process.argv[1]);
    const out = { CHAIN_RPC: j.rpcUrl, CHAIN_ID: j.chainId, CHAIN_PID: j.pid, DIAMOND: j.diamond,
      MOR: j.mor, MULTICALL3: j.multicall3, CHAIN_FUND_ADDR: j.fundingAccount, CHAIN_FUND_KEY: j.fundingKey };
    j.accounts.forEach((a, i) => { out["CHAIN_ADDR" + i] = a.address; out["CHAIN_KEY" + i] = a.privateKey; });
    for (const [k, v] of Object.entries(out)) console.log(`export ${k}=\x27${v}\x27`);' "$json")"
  T_PIDS+=("$CHAIN_PID")
  export CHAIN_DIR CAST
}

chain_stop() {
  "$T_ROOT/scripts/devnet" stop "$CHAIN_DIR"
}

chain_seed_provider() {
  local json
  json=$("$T_ROOT/scripts/devnet" seed "$CHAIN_DIR" "$@") || return 1
  eval "$(node -e '
    const j = JSON.parse(process.argv[1]);
    const out = { SEED_PROVIDER: j.provider, SEED_MODEL: j.modelId, SEED_BASE_MODEL: j.baseModelId,
      SEED_BID: j.bidId, SEED_PRICE: j.pricePerSecond, SEED_USER: j.user };
    for (const [k, v] of Object.entries(out)) console.log(`export ${k}=\x27${v}\x27`);' "$json")"
}

chain_call() {
  "$CAST" call --rpc-url "$CHAIN_RPC" "$@"
}

chain_send() {
  local key=$1
  shift
  "$CAST" send --rpc-url "$CHAIN_RPC" --private-key "$key" --json "$@"
}

chain_fund() {
  chain_send "$CHAIN_KEY0" "$MOR" "transfer(address,uint256)" "$1" "$2" >/dev/null
}

chain_time_travel() {
  "$CAST" rpc --rpc-url "$CHAIN_RPC" evm_increaseTime "$1" >/dev/null &&
    "$CAST" rpc --rpc-url "$CHAIN_RPC" evm_mine >/dev/null
}

chain_set_time() {
  "$CAST" rpc --rpc-url "$CHAIN_RPC" evm_setNextBlockTimestamp "$1" >/dev/null &&
    "$CAST" rpc --rpc-url "$CHAIN_RPC" evm_mine >/dev/null
}

chain_now() {
  "$CAST" block --rpc-url "$CHAIN_RPC" latest --field timestamp
}

chain_approval() {
  local ts=${3:-$(date +%s%3N)} cid=${4:-$CHAIN_ID}
  "$CAST" abi-encode "f(bytes32,uint256,address,uint128)" "$1" "$cid" "$2" "$ts"
}

chain_receipt() {
  local ts=${2:-$(date +%s%3N)} cid=${3:-$CHAIN_ID}
  "$CAST" abi-encode "f(bytes32,uint256,uint128,uint32,uint32,uint32,uint32)" \
    "$1" "$cid" "$ts" "${4:-42500}" "${5:-350}" "${6:-120}" "${7:-800}"
}

chain_sign() {
  "$CAST" wallet sign --private-key "$1" "$("$CAST" keccak "$2")"
}

chain_revert_name() {
  node -e '
    const m = /data: "(0x[0-9a-fA-F]*)"/.exec(process.argv[1]);
    if (!m || m[1].length < 10) process.exit(0);
    const data = m[1].toLowerCase(), sel = data.slice(0, 10);
    if (sel === "0x08c379a0") { // Error(string)
      const b = Buffer.from(data.slice(10), "hex");
      const len = Number(b.readBigUInt64BE(56));
      console.log(b.subarray(64, 64 + len).toString("utf8"));
      process.exit(0);
    }
    const all = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
    for (const c of Object.values(all))
      for (const [sig, s] of Object.entries(c.errors)) if (s === sel) { console.log(sig); process.exit(0); }
    console.log(sel);' "$1" "$CHAIN_SELECTORS"
}

chain_stake_for() {
  local now supply budget
  now=$(chain_now) || return 1
  supply=$(chain_call "$DIAMOND" "totalMORSupply(uint128)(uint256)" "$now" | awk '{print $1}')
  budget=$(chain_call "$DIAMOND" "getTodaysBudget(uint128)(uint256)" "$now" | awk '{print $1}')
  node -p "String(BigInt('$supply') * BigInt('$2') * BigInt('$1') / BigInt('$budget'))"
}

chain_open_session() {
  local ukey=$1 pkey=$2 bid=$3 amount=$4 direct=${5:-false} user appr rcpt
  user=$("$CAST" wallet address --private-key "$ukey") || return 1
  appr=$(chain_approval "$bid" "$user")
  chain_send "$ukey" "$MOR" "increaseAllowance(address,uint256)" "$DIAMOND" "$amount" >/dev/null || return 1
  rcpt=$(chain_send "$ukey" "$DIAMOND" "openSession(address,uint256,bool,bytes,bytes)" \
    "$user" "$amount" "$direct" "$appr" "$(chain_sign "$pkey" "$appr")") || return 1
  node -e 'const l = JSON.parse(process.argv[1]).logs.find(l => l.topics[0] ===
    "0x2bd7c890baf595977d256a6e784512c873ac58ba612b4895dbb7f784bfbf4839");
    if (!l) process.exit(1); console.log(l.topics[2])' "$rcpt"
}

chain_close_session() {
  local receipt
  receipt=$(chain_receipt "$3")
  chain_send "$1" "$DIAMOND" "closeSession(bytes,bytes)" "$receipt" "$(chain_sign "$2" "$receipt")" >/dev/null
}
