#!/usr/bin/env bash
# tests/integration/test_chain_contracts.sh: the Morpheus test chain (tests/chain/*.sol deployed by
# scripts/devnet) has the ABI and the observable rules of docs/morpheus-protocol.md §3: selectors,
# topics, error selectors and struct layouts; the §2.9 vectors; registry calls; openSession and
# closeSession with each documented revert; stake/stipend arithmetic; stakes on hold.
source "$(dirname "$0")/../support/lib.sh"
source "$T_ROOT/tests/support/chain.sh"

VEC=$T_ROOT/tests/chain/vectors.txt
SPEC_SEL=$T_ROOT/tests/chain/selectors.txt
vec() { sed -n "s/^$1[^:]*: //p" "$VEC"; }
lc() { printf '%s' "${1,,}"; }
pad() { printf '0x%064s' "$(lc "${1#0x}")" | tr ' ' 0; }
calc() { node -p "String($1)"; }
num() { chain_call "$@" | awk '{print $1; exit}'; }
cj() { chain_call --json "$@" | tr -d ' \n'; }
bal() { num "$MOR" "balanceOf(address)(uint256)" "$1"; }
hold() { chain_call "$DIAMOND" "getUserStakesOnHold(address,uint8)(uint256,uint256)" "$1" 50 | awk '{print $1}' | paste -sd' '; }

# eq DESC GOT WANT
eq() {
  if [[ $2 == "$3" ]]; then t_pass "$1"; else t_fail "$1" "got:  $2" "want: $3"; fi
}

# send_ok DESC KEY TO SIG ARGS...: the transaction succeeds; its receipt JSON is left in RCPT.
send_ok() {
  local desc=$1
  shift
  t_run chain_send "$@"
  RCPT=$T_OUT
  if [[ $T_RC -eq 0 && $RCPT == *'"status":"0x1"'* ]]; then t_pass "$desc"; else t_fail "$desc" "stderr: ${T_ERR:0:400}"; fi
}

# expect_revert DESC NAME CMD...: CMD fails and its revert decodes to NAME.
expect_revert() {
  local desc=$1 want=$2
  shift 2
  t_run "$@"
  local got
  got=$(chain_revert_name "$T_ERR")
  if [[ $T_RC -eq 0 ]]; then
    t_fail "$desc" "did not revert (wanted $want)"
  elif [[ $got != "$want" ]]; then
    t_fail "$desc" "reverted with '$got', wanted '$want'" "stderr: ${T_ERR:0:400}"
  else
    t_pass "$desc"
  fi
}

# log_of TOPIC0: "topic1 topic2 topic3 data" of the first log in RCPT with that topic0.
log_of() {
  node -e 'const r = JSON.parse(process.argv[1]);
    const l = r.logs.find(l => l.topics[0] === process.argv[2]);
    if (l) console.log([...l.topics.slice(1), l.data].join(" "))' "$RCPT" "$1"
}
block_ts() { "$CAST" block --rpc-url "$CHAIN_RPC" "$(node -p 'BigInt(JSON.parse(process.argv[1]).blockNumber).toString()' "$RCPT")" --field timestamp; }

T_START=$SECONDS
if [[ ! -x $CAST ]] || ! command -v node >/dev/null; then
  t_fail "cast and node are installed" "no $CAST or no node: run scripts/deps (npm ci)"
  t_done
  exit
fi

# ============================================================ §3 selectors, topics, errors, layouts
# One line per entry of tests/chain/selectors.txt: recomputed with cast, and present with exactly
# that signature in the compiled ABI.
declare -A BUILT
while read -r c kind sig val; do BUILT["$c $kind $sig"]=$val; done < <(node -e '
  const all = require(process.argv[1]);
  for (const [c, k] of Object.entries(all)) for (const kind of Object.keys(k))
    for (const [sig, v] of Object.entries(k[kind])) console.log(c, kind, sig, v);' "$T_ROOT/tests/chain/build/selectors.json")
while read -r kind contract sig want _; do
  [[ -z $kind || $kind == \#* ]] && continue
  case $contract in Diamond) c=MorpheusDiamondTest ;; MOR) c=MorToken ;; *) c=Multicall3Test ;; esac
  case $kind in
  function) cast_val=$("$CAST" sig "$sig") field=functions ;;
  error) cast_val=$("$CAST" sig "$sig") field=errors ;;
  event) cast_val=$("$CAST" sig-event "$sig") field=events ;;
  returns) cast_val=$want field=returns ;;
  esac
  built=${BUILT["$c $field $sig"]:-missing}
  if [[ $cast_val == "$want" && $built == "$want" ]]; then
    t_pass "§3 $kind $sig = $want"
  else
    t_fail "§3 $kind $sig = $want" "cast: $cast_val" "$c ABI: $built"
  fi
done <"$SPEC_SEL"

# ============================================================ §2.9 vectors (no chain needed)
V_USER=$(vec 'user address') V_PROV=$(vec 'provider address') V_MODEL=$(vec modelId)
V_BID=$(vec 'bidId = ') V_SID=$(vec 'sessionId = ')
V_APPROVAL=$(vec 'approval (abi') V_SIG=$(vec approvalSig)
V_REPORT=$(vec 'REPORT (abi') V_REPORT_SIG=$(vec signedReport)
eq "openSession calldata equals the vector byte for byte" \
  "$("$CAST" calldata "openSession(address,uint256,bool,bytes,bytes)" "$V_USER" 1000000000000000000 false "$V_APPROVAL" "$V_SIG")" \
  "$(vec 'openSession calldata')"
eq "closeSession calldata equals the vector byte for byte" \
  "$("$CAST" calldata "closeSession(bytes,bytes)" "$V_REPORT" "$V_REPORT_SIG")" "$(vec 'closeSession calldata')"

if chain_start; then t_pass "devnet starts (chain $CHAIN_ID at $CHAIN_RPC)"; else
  t_fail "devnet starts"
  t_done
  exit
fi
eq "chain_approval builds the vector approval" "$(chain_approval "$V_BID" "$V_USER" 1735689600123 42161)" "$V_APPROVAL"
eq "chain_sign (EIP-191, provider key) reproduces approvalSig" "$(chain_sign "$CHAIN_KEY1" "$V_APPROVAL")" "$V_SIG"
eq "chain_receipt builds the vector receipt" "$(chain_receipt "$V_SID" 1735690000250 42161)" "$V_REPORT"
eq "chain_sign reproduces signedReport" "$(chain_sign "$CHAIN_KEY1" "$V_REPORT")" "$V_REPORT_SIG"
eq "getBidId = keccak256(provider‖modelId‖nonce) gives the vector bidId" \
  "$(chain_call "$DIAMOND" "getBidId(address,bytes32,uint256)(bytes32)" "$V_PROV" "$V_MODEL" 0)" "$V_BID"
eq "getSessionId = keccak256(user‖provider‖bidId‖nonce) gives the vector sessionId (§2.9)" \
  "$(chain_call "$DIAMOND" "getSessionId(address,address,bytes32,uint256)(bytes32)" "$V_USER" "$V_PROV" "$V_BID" 7)" "$V_SID"

# Noon UTC of the next day: every session below opens and closes on one UTC day (the refund
# and dispute rules of §3.7 depend on startOfTheDay), whatever the wall clock says.
NOON=$((($(chain_now) / 86400 + 1) * 86400 + 43200))
chain_set_time "$NOON"
eq "chain_set_time moves the chain clock (give or take an interval block)" "$(($(chain_now) - NOON < 3))" 1

# ============================================================ parameters and §3.6.1 inputs
NOW=$(chain_now)
eq "getToken is the MOR token" "$(lc "$(chain_call "$DIAMOND" "getToken()(address)")")" "$(lc "$MOR")"
eq "getProviderMinimumStake/getModelMinimumStake/getBidFee are the mainnet deploy values (§3.1)" \
  "$(num "$DIAMOND" "getProviderMinimumStake()(uint256)") $(num "$DIAMOND" "getModelMinimumStake()(uint256)") $(num "$DIAMOND" "getBidFee()(uint256)")" \
  "100000000000000000 100000000000000000 100000000000000000"
eq "getMinMaxBidPricePerSecond, getMaxSessionDuration" \
  "$(cj "$DIAMOND" "getMinMaxBidPricePerSecond()(uint256,uint256)") $(num "$DIAMOND" "getMaxSessionDuration()(uint128)")" \
  "[10000000000000,10000000000000000] 86400"
SUPPLY=$(num "$DIAMOND" "totalMORSupply(uint128)(uint256)" "$NOW")
BUDGET=$(num "$DIAMOND" "getTodaysBudget(uint128)(uint256)" "$NOW")
eq "totalMORSupply and getTodaysBudget = computeBalance/100 are live and non-zero" \
  "$SUPPLY $BUDGET $(num "$DIAMOND" "getComputeBalance(uint128)(uint256)" "$NOW")" \
  "10000000000000000000000000 30000000000000000000000 3000000000000000000000000"
eq "stakeToStipend(a) = a × computeBalance / (supply × 100); stipendToStake inverts it" \
  "$(num "$DIAMOND" "stakeToStipend(uint256,uint128)(uint256)" 1000000000000000000 "$NOW") $(num "$DIAMOND" "stipendToStake(uint256,uint128)(uint256)" 3000000000000000 "$NOW")" \
  "3000000000000000 1000000000000000000"
eq "startOfTheDay" "$(num "$DIAMOND" "startOfTheDay(uint128)(uint128)" "$NOW")" "$((NOW - NOW % 86400))"
eq "getSessionEnd caps the duration at getMaxSessionDuration" \
  "$(num "$DIAMOND" "getSessionEnd(uint256,uint256,uint128)(uint128)" 1000000000000000000000000 10000000000000 1000)" "87400"
eq "delegation rights constants are the spec's (§3.6)" \
  "$(chain_call "$DIAMOND" "DELEGATION_RULES_SESSION()(bytes32)") $(chain_call "$DIAMOND" "DELEGATION_RULES_PROVIDER()(bytes32)")" \
  "0xbb0b3346f3a62a3cf205ec3a488d79de48762f0ab35cbf72aaf290fde72d79f5 0x95f03c9db87c84e0b1043857b43822e60143b5fd222cbae6a58608238277e43b"

# ============================================================ registry (§3.2, §3.3, §4.6)
P=$CHAIN_ADDR1 PK=$CHAIN_KEY1 U=$CHAIN_ADDR2 UK=$CHAIN_KEY2 X=$CHAIN_ADDR3 XK=$CHAIN_KEY3
if chain_seed_provider 127.0.0.1:4001 >/dev/null; then t_pass "devnet seed registers provider, model and bid"; else t_fail "devnet seed"; fi
MODEL=$SEED_MODEL BID=$SEED_BID PRICE=$SEED_PRICE
eq "modelId = keccak256(owner‖baseModelId)" "$MODEL" "$("$CAST" keccak "0x$(lc "${P#0x}")${SEED_BASE_MODEL#0x}")"
eq "bidId of the first bid = keccak256(provider‖modelId‖uint256(0))" "$BID" \
  "$("$CAST" keccak "0x$(lc "${P#0x}")${MODEL#0x}$(printf '%064x' 0)")"
prov=$(cj "$DIAMOND" "getProvider(address)((string,uint256,uint128,uint128,uint256,bool))" "$P")
eq "getProvider reads back endpoint and stake" "$(cut -d, -f1,2,5,6 <<<"$prov")" '[["127.0.0.1:4001",10000000000000000000,0,false]]'
eq "provider limitPeriodEnd = createdAt + 365 days" "$(node -p 'const a = JSON.parse(process.argv[1])[0]; a[3] - a[2]' "$prov")" 31536000
raw=$(chain_call "$DIAMOND" "getProvider(address)" "$P")
eq "Provider return data: word 0x20, then the endpoint offset 0xc0 (§3.3)" \
  "$(calc "BigInt('0x${raw:2:64}')") $(calc "BigInt('0x${raw:66:64}')")" "32 192"
model=$(cj "$DIAMOND" "getModel(bytes32)((bytes32,uint256,uint256,address,string,string[],uint128,bool))" "$MODEL")
eq "getModel reads back cid, fee, stake, owner, name, tags" "$(cut -d, -f1-6 <<<"$model"),$(cut -d, -f8 <<<"$model")" \
  "[[\"$("$CAST" keccak ipfs:morgate-test-model)\",0,1000000000000000000,\"$P\",\"morgate-test-model\",[\"llm\"],false]]"
bid=$(cj "$DIAMOND" "getBid(bytes32)((address,bytes32,uint256,uint256,uint128,uint128))" "$BID")
eq "getBid reads back provider, model, price, nonce, deletedAt" "$(cut -d, -f1-4,6 <<<"$bid")" "[[\"$P\",\"$MODEL\",$PRICE,0,0]]"
eq "isBidActive, getIsProviderActive, getIsModelActive" \
  "$(chain_call "$DIAMOND" "isBidActive(bytes32)(bool)" "$BID") $(chain_call "$DIAMOND" "getIsProviderActive(address)(bool)" "$P") $(chain_call "$DIAMOND" "getIsModelActive(bytes32)(bool)" "$MODEL")" \
  "true true true"
eq "getActiveProviders / getModelIds / getActiveModelIds" \
  "$(cj "$DIAMOND" "getActiveProviders(uint256,uint256)(address[],uint256)" 0 10) $(cj "$DIAMOND" "getModelIds(uint256,uint256)(bytes32[],uint256)" 0 10) $(cj "$DIAMOND" "getActiveModelIds(uint256,uint256)(bytes32[],uint256)" 0 10)" \
  "[[\"$P\"],1] [[\"$MODEL\"],1] [[\"$MODEL\"],1]"

# A second provider (account 3) bids on the same model, by hand with cast (§4.6 order).
chain_fund "$X" 100000000000000000000
send_ok "second provider: approve the Diamond" "$XK" "$MOR" "approve(address,uint256)" "$DIAMOND" 20000000000000000000
send_ok "second provider: providerRegister" "$XK" "$DIAMOND" "providerRegister(address,uint256,string)" "$X" 1000000000000000000 "127.0.0.1:4002"
eq "ProviderRegistered(provider) log, provider indexed" "$(log_of 0x70abce74777b3838ae60a33a6b9a87d9d25532668fe4fea548554c55868579c0)" "$(pad "$X") 0x"
send_ok "second provider: postModelBid pays the bid fee" "$XK" "$DIAMOND" "postModelBid(address,bytes32,uint256)" "$X" "$MODEL" 20000000000000
eq "MarketplaceBidPosted(provider, modelId, nonce 0)" "$(log_of 0xfc422bb61cd73bc76f27eecf69cce3db0b05d39769ca3ed0fb314a3d04bff6f6)" "$(pad "$X") $MODEL $(pad 0)"
eq "bid fee taken: 100 - 1 stake - 0.1 fee = 98.9 MOR left" "$(bal "$X")" 98900000000000000000
XBID0=$(chain_call "$DIAMOND" "getBidId(address,bytes32,uint256)(bytes32)" "$X" "$MODEL" 0)
eq "getModelActiveBids(model, 0, 255) lists both bids, total 2" "$(cj "$DIAMOND" "getModelActiveBids(bytes32,uint256,uint256)(bytes32[],uint256)" "$MODEL" 0 255)" "[[\"$BID\",\"$XBID0\"],2]"
# shellcheck disable=SC2086 # $p is "offset limit"
eq "getModelActiveBids pages: (0,1) (1,1) (0,0) (5,10)" \
  "$(for p in "0 1" "1 1" "0 0" "5 10"; do cj "$DIAMOND" "getModelActiveBids(bytes32,uint256,uint256)(bytes32[],uint256)" "$MODEL" $p; echo -n ' '; done)" \
  "[[\"$BID\"],2] [[\"$XBID0\"],2] [[],2] [[],2] "
send_ok "a new bid for the same provider and model" "$XK" "$DIAMOND" "postModelBid(address,bytes32,uint256)" "$X" "$MODEL" 30000000000000
eq "... deletes the previous one (MarketplaceBidDeleted nonce 0) and has nonce 1" \
  "$(log_of 0x409dfc0f98bf6e062e576fbdc63c9f82392d44deff61e3412f8bd256d2814883) / $(log_of 0xfc422bb61cd73bc76f27eecf69cce3db0b05d39769ca3ed0fb314a3d04bff6f6)" \
  "$(pad "$X") $MODEL $(pad 0) / $(pad "$X") $MODEL $(pad 1)"
XBID1=$(chain_call "$DIAMOND" "getBidId(address,bytes32,uint256)(bytes32)" "$X" "$MODEL" 1)
old=$(cj "$DIAMOND" "getBid(bytes32)((address,bytes32,uint256,uint256,uint128,uint128))" "$XBID0")
eq "the replaced bid has deletedAt set and is inactive" \
  "$(node -p 'JSON.parse(process.argv[1])[0][5] > 0' "$old") $(chain_call "$DIAMOND" "isBidActive(bytes32)(bool)" "$XBID0")" "true false"
eq "active/all bid lists: model active 2, model all 3, provider all 2, provider active 1" \
  "$(cj "$DIAMOND" "getModelActiveBids(bytes32,uint256,uint256)(bytes32[],uint256)" "$MODEL" 0 0) $(cj "$DIAMOND" "getModelBids(bytes32,uint256,uint256)(bytes32[],uint256)" "$MODEL" 0 0) $(cj "$DIAMOND" "getProviderBids(address,uint256,uint256)(bytes32[],uint256)" "$X" 0 0) $(cj "$DIAMOND" "getProviderActiveBids(address,uint256,uint256)(bytes32[],uint256)" "$X" 0 10)" \
  "[[],2] [[],3] [[],2] [[\"$XBID1\"],1]"
expect_revert "deleteModelBid by another account: InsufficientRightsForOperation" "InsufficientRightsForOperation(address,address)" \
  chain_send "$PK" "$DIAMOND" "deleteModelBid(bytes32)" "$XBID1"
send_ok "deleteModelBid by the provider" "$XK" "$DIAMOND" "deleteModelBid(bytes32)" "$XBID1"
expect_revert "deleteModelBid again: MarketplaceActiveBidNotFound" "MarketplaceActiveBidNotFound()" \
  chain_send "$XK" "$DIAMOND" "deleteModelBid(bytes32)" "$XBID1"
expect_revert "postModelBid below the minimum price: MarketplaceBidPricePerSecondInvalid" "MarketplaceBidPricePerSecondInvalid()" \
  chain_send "$XK" "$DIAMOND" "postModelBid(address,bytes32,uint256)" "$X" "$MODEL" 1
expect_revert "postModelBid on an unknown model: MarketplaceModelNotFound" "MarketplaceModelNotFound()" \
  chain_send "$XK" "$DIAMOND" "postModelBid(address,bytes32,uint256)" "$X" "$(pad 0x1234)" 20000000000000
expect_revert "postModelBid by an unregistered provider: MarketplaceProviderNotFound" "MarketplaceProviderNotFound()" \
  chain_send "$UK" "$DIAMOND" "postModelBid(address,bytes32,uint256)" "$U" "$MODEL" 20000000000000
expect_revert "providerRegister below the minimum stake: ProviderStakeTooLow" "ProviderStakeTooLow(uint256,uint256)" \
  chain_send "$UK" "$DIAMOND" "providerRegister(address,uint256,string)" "$U" 0 "127.0.0.1:1"
expect_revert "modelRegister below the minimum stake: ModelStakeTooLow" "ModelStakeTooLow(uint256,uint256)" \
  chain_send "$UK" "$DIAMOND" "modelRegister(address,bytes32,bytes32,uint256,uint256,string,string[])" "$U" "$(pad 1)" "$(pad 2)" 0 0 m '[]'
expect_revert "providerDeregister with an active bid: ProviderHasActiveBids" "ProviderHasActiveBids()" \
  chain_send "$PK" "$DIAMOND" "providerDeregister(address)" "$P"
send_ok "providerDeregister without active bids" "$XK" "$DIAMOND" "providerDeregister(address)" "$X"
eq "... emits ProviderDeregistered, returns the stake, deactivates" \
  "$(log_of 0xf04091b4a187e321a42001e46961e45b6a75b203fc6fb766b7e05505f6080abb) $(bal "$X") $(chain_call "$DIAMOND" "getIsProviderActive(address)(bool)" "$X")" \
  "$(pad "$X") 0x 99800000000000000000 false"
expect_revert "providerDeregister again: ProviderNotFound" "ProviderNotFound()" chain_send "$XK" "$DIAMOND" "providerDeregister(address)" "$X"
Z32=$(pad 0xdead)
eq "unknown ids read as zeros, no revert (§3.3, §7.12): getBid getSession getProvider getModel" \
  "$(cj "$DIAMOND" "getBid(bytes32)((address,bytes32,uint256,uint256,uint128,uint128))" "$Z32") $(cj "$DIAMOND" "getSession(bytes32)((address,bytes32,uint256,bytes,uint256,uint256,uint128,uint128,uint128,bool,bool))" "$Z32") $(cj "$DIAMOND" "getProvider(address)((string,uint256,uint128,uint128,uint256,bool))" "$U") $(cj "$DIAMOND" "getModel(bytes32)((bytes32,uint256,uint256,address,string,string[],uint128,bool))" "$Z32")" \
  "[[\"0x0000000000000000000000000000000000000000\",\"$(pad 0)\",0,0,0,0]] [[\"0x0000000000000000000000000000000000000000\",\"$(pad 0)\",0,\"0x\",0,0,0,0,0,false,false]] [[\"\",0,0,0,0,false]] [[\"$(pad 0)\",0,0,\"0x0000000000000000000000000000000000000000\",\"\",[],0,false]]"
eq "unknown model/provider/user lists are empty" \
  "$(cj "$DIAMOND" "getModelActiveBids(bytes32,uint256,uint256)(bytes32[],uint256)" "$Z32" 0 255) $(cj "$DIAMOND" "getUserSessions(address,uint256,uint256)(bytes32[],uint256)" "$X" 0 255)" \
  "[[],0] [[],0]"
mc=$(chain_call "$MULTICALL3" "aggregate((address,bytes)[])(uint256,bytes[])" \
  "[($DIAMOND,$("$CAST" calldata "isBidActive(bytes32)" "$BID")),($DIAMOND,$("$CAST" calldata "getProviderMinimumStake()"))]" | tail -1)
eq "Multicall3 aggregate at the canonical address batches Diamond calls" "$mc" "[$(pad 1), $("$CAST" to-uint256 100000000000000000)]"

send_ok "modelRegister by the second provider" "$XK" "$DIAMOND" "modelRegister(address,bytes32,bytes32,uint256,uint256,string,string[])" \
  "$X" "$(pad 7)" "$(pad 8)" 5 1000000000000000000 "x-model" '["LLM","tee"]'
XMODEL=$(chain_call "$DIAMOND" "getModelId(address,bytes32)(bytes32)" "$X" "$(pad 7)")
eq "ModelRegisteredUpdated(owner, modelId), both indexed" "$(log_of 0xda9282a68d90c36d31d780a69a65da6c35191a5d8cdd37bd1a1a5aa9fb168e77)" "$(pad "$X") $XMODEL 0x"
expect_revert "modelDeregister of a model with an active bid: ModelHasActiveBids" "ModelHasActiveBids()" \
  chain_send "$PK" "$DIAMOND" "modelDeregister(bytes32)" "$MODEL"
send_ok "modelDeregister without bids" "$XK" "$DIAMOND" "modelDeregister(bytes32)" "$XMODEL"
eq "... deactivates it and returns its stake" \
  "$(chain_call "$DIAMOND" "getIsModelActive(bytes32)(bool)" "$XMODEL") $(cj "$DIAMOND" "getActiveModelIds(uint256,uint256)(bytes32[],uint256)" 0 10) $(cj "$DIAMOND" "getModelIds(uint256,uint256)(bytes32[],uint256)" 0 0) $(bal "$X")" \
  "false [[\"$MODEL\"],1] [[],2] 99800000000000000000"

# ============================================================ MOR token (§3.2, §3.4, §3.6.2)
send_ok "MOR increaseAllowance" "$XK" "$MOR" "increaseAllowance(address,uint256)" "$U" 5
send_ok "MOR increaseAllowance again" "$XK" "$MOR" "increaseAllowance(address,uint256)" "$U" 7
eq "Approval(owner, spender, value) log and allowance 12" \
  "$(log_of 0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925) $(num "$MOR" "allowance(address,address)(uint256)" "$X" "$U")" \
  "$(pad "$X") $(pad "$U") $("$CAST" to-uint256 12) 12"
send_ok "MOR transferFrom within the allowance" "$UK" "$MOR" "transferFrom(address,address,uint256)" "$X" "$U" 12
eq "Transfer(from, to, value) log, allowance used up" \
  "$(log_of 0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef) $(num "$MOR" "allowance(address,address)(uint256)" "$X" "$U")" \
  "$(pad "$X") $(pad "$U") $("$CAST" to-uint256 12) 0"
send_ok "MOR transfer" "$UK" "$MOR" "transfer(address,uint256)" "$X" 12
expect_revert "MOR transfer beyond the balance: 'ERC20: transfer amount exceeds balance'" "ERC20: transfer amount exceeds balance" \
  chain_send "$XK" "$MOR" "transfer(address,uint256)" "$U" 1000000000000000000000

# ============================================================ openSession (§3.6)
U_START=$(bal "$U")
NOW=$(chain_now)
COST=$(calc "${PRICE}n * 600n")
STAKE=$(calc "$(num "$DIAMOND" "totalMORSupply(uint128)(uint256)" "$NOW")n * ${COST}n / $(num "$DIAMOND" "getTodaysBudget(uint128)(uint256)" "$NOW")n")
eq "stake for 600 s from the live views (§3.6.1): supply × price × 600 / budget" "$STAKE" 2000000000000000000
TS=$(date +%s%3N)
APPR=$(chain_approval "$BID" "$U" "$TS") ASIG=$(chain_sign "$PK" "$APPR")
OPEN="openSession(address,uint256,bool,bytes,bytes)"
expect_revert "openSession without an allowance: the token's 'ERC20: insufficient allowance'" "ERC20: insufficient allowance" \
  chain_send "$UK" "$DIAMOND" "$OPEN" "$U" "$STAKE" false "$APPR" "$ASIG"
send_ok "approve the Diamond for exactly the stake" "$UK" "$MOR" "approve(address,uint256)" "$DIAMOND" "$STAKE"
expect_revert "openSession by someone else for the user: InsufficientRightsForOperation" "InsufficientRightsForOperation(address,address)" \
  chain_send "$XK" "$DIAMOND" "$OPEN" "$U" "$STAKE" false "$APPR" "$ASIG"
send_ok "openSession with the provider-signed approval" "$UK" "$DIAMOND" "$OPEN" "$U" "$STAKE" false "$APPR" "$ASIG"
SID=$(chain_call "$DIAMOND" "getSessionId(address,address,bytes32,uint256)(bytes32)" "$U" "$P" "$BID" 0)
eq "SessionOpened(user, sessionId, provider): topic0 0x2bd7c890…, all indexed, sessionId = getSessionId(user, provider, bid, nonce 0)" \
  "$(log_of 0x2bd7c890baf595977d256a6e784512c873ac58ba612b4895dbb7f784bfbf4839)" "$(pad "$U") $SID $(pad "$P") 0x"
OPENED=$(block_ts)
ENDS=$(num "$DIAMOND" "getSessionEnd(uint256,uint256,uint128)(uint128)" "$STAKE" "$PRICE" "$OPENED")
eq "endsAt = openedAt + stakeToStipend(stake)/price (600 s)" "$((ENDS - OPENED))" 600
eq "getSession reads the open session back" \
  "$(cj "$DIAMOND" "getSession(bytes32)((address,bytes32,uint256,bytes,uint256,uint256,uint128,uint128,uint128,bool,bool))" "$SID")" \
  "[[\"$U\",\"$BID\",$STAKE,\"0x\",0,0,$OPENED,$ENDS,0,true,false]]"
eq "getUserSessions / getProviderSessions list it" \
  "$(cj "$DIAMOND" "getUserSessions(address,uint256,uint256)(bytes32[],uint256)" "$U" 0 255) $(cj "$DIAMOND" "getProviderSessions(address,uint256,uint256)(bytes32[],uint256)" "$P" 0 255)" \
  "[[\"$SID\"],1] [[\"$SID\"],1]"
eq "stake pulled with transferFrom: balance -stake, allowance used up, approval marked used" \
  "$(calc "${U_START}n - $(bal "$U")n") $(num "$MOR" "allowance(address,address)(uint256)" "$U" "$DIAMOND") $(chain_call "$DIAMOND" "getIsProviderApprovalUsed(bytes)(bool)" "$APPR")" \
  "$STAKE 0 true"

send_ok "approve the Diamond for more sessions" "$UK" "$MOR" "approve(address,uint256)" "$DIAMOND" 100000000000000000000
expect_revert "reused approval: SessionDuplicateApproval" "SessionDuplicateApproval()" \
  chain_send "$UK" "$DIAMOND" "$OPEN" "$U" "$STAKE" false "$APPR" "$ASIG"
A2=$(chain_approval "$BID" "$U" $((TS + 1)))
expect_revert "approval signed by another key: SessionProviderSignatureMismatch" "SessionProviderSignatureMismatch()" \
  chain_send "$UK" "$DIAMOND" "$OPEN" "$U" "$STAKE" false "$A2" "$(chain_sign "$XK" "$A2")"
sig=$(chain_sign "$PK" "$A2")
v01=${sig:0:130}$(printf '%02x' $((16#${sig:130:2} - 27)))
expect_revert "signature with v=0/1 instead of 27/28: 'ECDSA: invalid signature' (§7.3)" "ECDSA: invalid signature" \
  chain_send "$UK" "$DIAMOND" "$OPEN" "$U" "$STAKE" false "$A2" "$v01"
expect_revert "64-byte signature: 'ECDSA: invalid signature length' (§3.5)" "ECDSA: invalid signature length" \
  chain_send "$UK" "$DIAMOND" "$OPEN" "$U" "$STAKE" false "$A2" "${sig:0:130}"
A3=$(chain_approval "$BID" "$U" "$TS" 42161)
expect_revert "approval for another chain id: SessionApprovedForAnotherChainId" "SessionApprovedForAnotherChainId()" \
  chain_send "$UK" "$DIAMOND" "$OPEN" "$U" "$STAKE" false "$A3" "$(chain_sign "$PK" "$A3")"
send_ok "switch to the Go bindings' spelling (test-only setter)" "$CHAIN_KEY0" "$DIAMOND" "setLegacyErrorSpelling(bool)" true
expect_revert "... then it is SesssionApprovedForAnotherChainId (§3.5, decode both)" "SesssionApprovedForAnotherChainId()" \
  chain_send "$UK" "$DIAMOND" "$OPEN" "$U" "$STAKE" false "$A3" "$(chain_sign "$PK" "$A3")"
send_ok "back to the current spelling" "$CHAIN_KEY0" "$DIAMOND" "setLegacyErrorSpelling(bool)" false
expect_revert "owner-only setter from another account: OwnableUnauthorizedAccount" "OwnableUnauthorizedAccount(address)" \
  chain_send "$UK" "$DIAMOND" "setLegacyErrorSpelling(bool)" true
A4=$(chain_approval "$BID" "$U" $(($(chain_now) - 601)))
expect_revert "approval timestamp in seconds, 601 s old: SessionApproveExpired (TTL 600 s)" "SessionApproveExpired()" \
  chain_send "$UK" "$DIAMOND" "$OPEN" "$U" "$STAKE" false "$A4" "$(chain_sign "$PK" "$A4")"
A5=$(chain_approval "$BID" "$U" $((TS + 5)))
expect_revert "amount buying 299 s: SessionTooShort (minimum 300 s)" "SessionTooShort()" \
  chain_send "$UK" "$DIAMOND" "$OPEN" "$U" "$(calc "${STAKE}n * 299n / 600n")" false "$A5" "$(chain_sign "$PK" "$A5")"
A6=$(chain_approval "$Z32" "$U" "$TS")
expect_revert "approval for an unknown bid: SessionBidNotFound" "SessionBidNotFound()" \
  chain_send "$UK" "$DIAMOND" "$OPEN" "$U" "$STAKE" false "$A6" "$(chain_sign "$PK" "$A6")"
send_ok "the user grants delegation.rules.session to account 3 (test-only registry)" "$UK" "$DIAMOND" \
  "setDelegation(address,bytes32,bool)" "$X" 0xbb0b3346f3a62a3cf205ec3a488d79de48762f0ab35cbf72aaf290fde72d79f5 true
send_ok "a delegate opens a session for the user, 300 s exactly" "$XK" "$DIAMOND" "$OPEN" "$U" "$(calc "${STAKE}n / 2n")" false "$A5" "$(chain_sign "$PK" "$A5")"
O2=$(block_ts)
SID2=$(log_of 0x2bd7c890baf595977d256a6e784512c873ac58ba612b4895dbb7f784bfbf4839 | awk '{print $2}')
eq "second session id uses the next global nonce" "$SID2" "$(chain_call "$DIAMOND" "getSessionId(address,address,bytes32,uint256)(bytes32)" "$U" "$P" "$BID" 1)"

# ============================================================ closeSession (§3.7)
chain_time_travel 120
CLOSE="closeSession(bytes,bytes)"
R1=$(chain_receipt "$SID")
RS1=$(chain_sign "$PK" "$R1")
R2=$(chain_receipt "$SID" "$(date +%s%3N)" 42161)
expect_revert "receipt for another chain id: SessionReceiptForAnotherChainId" "SessionReceiptForAnotherChainId()" \
  chain_send "$UK" "$DIAMOND" "$CLOSE" "$R2" "$(chain_sign "$PK" "$R2")"
R3=$(chain_receipt "$SID" $(($(chain_now) - 601)))
expect_revert "receipt timestamp 601 s old (seconds): SessionReceiptExpired" "SessionReceiptExpired()" \
  chain_send "$UK" "$DIAMOND" "$CLOSE" "$R3" "$(chain_sign "$PK" "$R3")"
expect_revert "the provider cannot close: InsufficientRightsForOperation" "InsufficientRightsForOperation(address,address)" \
  chain_send "$PK" "$DIAMOND" "$CLOSE" "$R1" "$RS1"
P0=$(bal "$P") F0=$(bal "$CHAIN_FUND_ADDR") U0=$(bal "$U")
send_ok "closeSession with the provider-signed 7-word receipt" "$UK" "$DIAMOND" "$CLOSE" "$R1" "$RS1"
eq "SessionClosed(user, sessionId, provider), topic0 0x337fbb0a…" \
  "$(log_of 0x337fbb0a41a596db800dc836595a57815f967185e3596615c646f2455ac3914a)" "$(pad "$U") $SID $(pad "$P") 0x"
CLOSED=$(block_ts)
eq "getSession: closedAt, inactive, closeoutType 0, closeoutReceipt = the receipt" \
  "$(cj "$DIAMOND" "getSession(bytes32)((address,bytes32,uint256,bytes,uint256,uint256,uint128,uint128,uint128,bool,bool))" "$SID" | cut -d, -f4,5,9,10)" \
  "\"$R1\",0,$CLOSED,false"
PAY=$(calc "BigInt($CLOSED - $OPENED) * ${PRICE}n")
eq "provider paid (closedAt - openedAt) × price from the funding account" \
  "$(calc "$(bal "$P")n - ${P0}n") $(calc "${F0}n - $(bal "$CHAIN_FUND_ADDR")n")" "$PAY $PAY"
DAY=$((CLOSED - CLOSED % 86400))
HOLD=$(calc "BigInt($CLOSED - Math.max($OPENED, $DAY)) * ${PRICE}n * 10000000000000000000000000n * 100n / 3000000000000000000000000n")
eq "user refund: today's part (stipendToStake of used time) on hold, the rest back now" \
  "$(calc "$(bal "$U")n - ${U0}n") $(hold "$U")" "$(calc "${STAKE}n - ${HOLD}n") 0 $HOLD"
eq "the provider's earnings count against its stake for the year (limitPeriodEarned)" \
  "$(cj "$DIAMOND" "getProvider(address)((string,uint256,uint128,uint128,uint256,bool))" "$P" | cut -d, -f5)" "$PAY"
eq "totalMORSupply/getTodaysBudget follow providersTotalClaimed" \
  "$(num "$DIAMOND" "totalMORSupply(uint128)(uint256)" "$CLOSED") $(num "$DIAMOND" "getComputeBalance(uint128)(uint256)" "$CLOSED")" \
  "$(calc "10000000000000000000000000n + ${PAY}n") $(calc "3000000000000000000000000n - ${PAY}n")"
DUR=$((CLOSED - OPENED))
eq "provider-model stats: tps/ttft means from the receipt, duration, success 1 of 1" \
  "$(cj "$DIAMOND" "getProviderModelStats(bytes32,address)(((int64,int64),(int64,int64),uint32,uint32,uint32))" "$MODEL" "$P")" \
  "[[[42500,0],[350,0],$DUR,1,1]]"
eq "model stats: means of the provider means, count 1" \
  "$(cj "$DIAMOND" "getModelStats(bytes32)(((int64,int64),(int64,int64),(int64,int64),uint32))" "$MODEL")" \
  "[[[42500,0],[350,0],[$DUR,0],1]]"
expect_revert "closing again: SessionAlreadyClosed" "SessionAlreadyClosed()" chain_send "$UK" "$DIAMOND" "$CLOSE" "$R1" "$RS1"

RU=$(chain_receipt "$SID2" "$(date +%s%3N)" "$CHAIN_ID" 99999 1 1 1)
P0=$(bal "$P")
send_ok "closeSession with a user-signed receipt (the Go fallback)" "$UK" "$DIAMOND" "$CLOSE" "$RU" "$(chain_sign "$UK" "$RU")"
C2=$(block_ts) P1=$(bal "$P")
DAY2=$((C2 - C2 % 86400))
REWARD2=$(calc "BigInt($C2 - $O2) * ${PRICE}n")
WITHHELD2=$(calc "BigInt($C2 - Math.max($O2, $DAY2)) * ${PRICE}n")
eq "disputed early close: the provider gets the used time minus today's part" "$(calc "${P1}n - ${P0}n")" "$(calc "${REWARD2}n - ${WITHHELD2}n")"
eq "... is recorded as a dispute: closeoutType 1, no stats credit, totalCount 2" \
  "$(cj "$DIAMOND" "getSession(bytes32)((address,bytes32,uint256,bytes,uint256,uint256,uint128,uint128,uint128,bool,bool))" "$SID2" | cut -d, -f5) $(cj "$DIAMOND" "getProviderModelStats(bytes32,address)(((int64,int64),(int64,int64),uint32,uint32,uint32))" "$MODEL" "$P")" \
  "1 [[[42500,0],[350,0],$DUR,1,2]]"

# ============================================================ stakes on hold
expect_revert "withdrawUserStakes before release: SessionUserAmountToWithdrawIsZero" "SessionUserAmountToWithdrawIsZero()" \
  chain_send "$UK" "$DIAMOND" "withdrawUserStakes(address,uint8)" "$U" 50
read -r _ HELD <<<"$(hold "$U")"
expect_revert "claimForProvider by someone else: InsufficientRightsForOperation" "InsufficientRightsForOperation(address,address)" \
  chain_send "$UK" "$DIAMOND" "claimForProvider(bytes32)" "$SID2"
send_ok "claimForProvider on the day of a disputed close" "$PK" "$DIAMOND" "claimForProvider(bytes32)" "$SID2"
eq "... pays nothing yet" "$(bal "$P")" "$P1"
chain_time_travel 86400
send_ok "claimForProvider the next day" "$PK" "$DIAMOND" "claimForProvider(bytes32)" "$SID2"
eq "... pays the withheld part: the provider got (closedAt - openedAt) × price in all" "$(calc "$(bal "$P")n - ${P0}n")" "$REWARD2"
eq "a day later the held stake is available" "$(hold "$U")" "$HELD 0"
send_ok "withdrawUserStakes" "$UK" "$DIAMOND" "withdrawUserStakes(address,uint8)" "$U" 50
eq "UserWithdrawn(user, amount) and every staked MOR is back with the user" \
  "$(log_of 0xe6b386172074b393dc04ed6cb1a352475ffad5dd8cebc76231a3b683141ea6fb) $(bal "$U")" "$(pad "$U") $("$CAST" to-uint256 "$HELD") $U_START"

# ============================================================ direct payment (§3.6 step 5, §3.7)
A7=$(chain_approval "$BID" "$U" $((TS + 7)))
U0=$(bal "$U") P0=$(bal "$P")
send_ok "openSession with isDirectPaymentFromUser" "$UK" "$DIAMOND" "$OPEN" "$U" "$STAKE" true "$A7" "$(chain_sign "$PK" "$A7")"
SID3=$(log_of 0x2bd7c890baf595977d256a6e784512c873ac58ba612b4895dbb7f784bfbf4839 | awk '{print $2}')
O3=$(block_ts)
chain_time_travel 700
R7=$(chain_receipt "$SID3")
send_ok "close it after endsAt" "$UK" "$DIAMOND" "$CLOSE" "$R7" "$(chain_sign "$PK" "$R7")"
S3=$(cj "$DIAMOND" "getSession(bytes32)((address,bytes32,uint256,bytes,uint256,uint256,uint128,uint128,uint128,bool,bool))" "$SID3")
E3=$(node -p 'JSON.parse(process.argv[1])[0][7]' "$S3")
DPAY=$(calc "BigInt($E3 - $O3) * ${PRICE}n")
eq "provider paid (endsAt - openedAt) × price from the stake, the user gets the rest at once" \
  "$(calc "$(bal "$P")n - ${P0}n") $(calc "${U0}n - $(bal "$U")n") $(cut -d, -f6,7,11 <<<"$S3")" \
  "$DPAY $DPAY $DPAY,$O3,true]]"

# ============================================================ §7 traps 14 and 15
A8=$(chain_approval "$BID" "$X" $((TS + 8)))
send_ok "an approval naming another user still opens (its user word is not checked, §7.14)" \
  "$UK" "$DIAMOND" "$OPEN" "$U" "$STAKE" false "$A8" "$(chain_sign "$PK" "$A8")"
SID4=$(log_of 0x2bd7c890baf595977d256a6e784512c873ac58ba612b4895dbb7f784bfbf4839 | awk '{print $2}')
eq "... and the session belongs to the caller's user" \
  "$(cj "$DIAMOND" "getSession(bytes32)((address,bytes32,uint256,bytes,uint256,uint256,uint128,uint128,uint128,bool,bool))" "$SID4" | cut -d, -f1)" "[[\"$U\""
chain_time_travel 30
send_ok "the funding account withdraws its allowance" "$CHAIN_FUND_KEY" "$MOR" "approve(address,uint256)" "$DIAMOND" 0
R8=$(chain_receipt "$SID4")
expect_revert "closing a staked session then fails: the provider is paid by transferFrom(fundingAccount) (§7.15)" \
  "ERC20: insufficient allowance" chain_send "$UK" "$DIAMOND" "$CLOSE" "$R8" "$(chain_sign "$PK" "$R8")"
send_ok "the funding account approves again" "$CHAIN_FUND_KEY" "$MOR" "approve(address,uint256)" "$DIAMOND" 1000000000000000000000
send_ok "... and the close goes through" "$UK" "$DIAMOND" "$CLOSE" "$R8" "$(chain_sign "$PK" "$R8")"

# ============================================================ chain.sh session helpers
STAKE4=$(chain_stake_for 400 "$PRICE")
if SID5=$(chain_open_session "$UK" "$PK" "$BID" "$STAKE4") && [[ $SID5 == 0x* ]]; then
  t_pass "chain_open_session (stake from chain_stake_for 400 s)"
else
  t_fail "chain_open_session" "got '$SID5'"
fi
S5=$(cj "$DIAMOND" "getSession(bytes32)((address,bytes32,uint256,bytes,uint256,uint256,uint128,uint128,uint128,bool,bool))" "$SID5")
eq "... buys 399-400 s (rounding, §3.6.1)" "$(node -p 'const a = JSON.parse(process.argv[1])[0]; a[7] - a[6] >= 399 && a[7] - a[6] <= 400' "$S5")" true
t_ok "chain_close_session with the user's key" chain_close_session "$UK" "$UK" "$SID5"
eq "... is a dispute" "$(cj "$DIAMOND" "getSession(bytes32)((address,bytes32,uint256,bytes,uint256,uint256,uint128,uint128,uint128,bool,bool))" "$SID5" | cut -d, -f5)" 1

# ============================================================ devnet options
t_bg watched sleep 60
WATCHED=$T_LAST_PID
if j=$("$T_ROOT/scripts/devnet" start --state-dir "$T_DIR/devnet2" --chain-id 42161 --block-time 0 --watch "$WATCHED"); then
  pid2=$(cat "$T_DIR/devnet2/anvil.pid")
  T_PIDS+=("$pid2")
  rpc2=$(node -p 'JSON.parse(process.argv[1]).rpcUrl' "$j")
  eq "devnet start --chain-id 42161: the JSON, eth_chainId and devnet.json agree" \
    "$(node -p 'JSON.parse(process.argv[1]).chainId' "$j") $("$CAST" chain-id --rpc-url "$rpc2") $(cmp -s "$T_DIR/devnet2/devnet.json" <(echo "$j") && echo same-file)" "42161 42161 same-file"
  kill "$WATCHED"
  for ((i = 0; i < 40; i++)); do kill -0 "$pid2" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid2" 2>/dev/null; then t_fail "devnet start --watch PID: anvil stops when PID exits"; else
    t_pass "devnet start --watch PID: anvil stops when PID exits"
  fi
else
  t_fail "devnet start --chain-id 42161"
fi

# ============================================================ stop
if chain_stop && ! kill -0 "$CHAIN_PID" 2>/dev/null; then t_pass "devnet stop ends anvil by PID"; else t_fail "devnet stop ends anvil by PID"; fi
echo "# runtime $((SECONDS - T_START)) s"
t_done
