#!/usr/bin/env bash
# tests/integration/test_chain_contracts.sh: the Morpheus test chain (tests/chain, scripts/devnet)
# behaves as docs/morpheus-protocol.md §3 documents: selectors, vectors, registry, sessions.
source "$(dirname "$0")/../support/lib.sh"
source "$T_ROOT/tests/support/chain.sh"

VEC=$T_ROOT/tests/chain/vectors.txt
vec() { sed -n "s/^$1[^:]*: //p" "$VEC"; }

# eq DESC GOT WANT
eq() {
  if [[ $2 == "$3" ]]; then t_pass "$1"; else t_fail "$1" "got:  $2" "want: $3"; fi
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

t_start=$SECONDS
if chain_start; then t_pass "devnet starts (chain $CHAIN_ID at $CHAIN_RPC)"; else t_fail "devnet starts"; t_done; exit; fi

# ---- §2.9 vectors: calldata and id formulas
V_USER=$(vec 'user address') V_PROV=$(vec 'provider address') V_MODEL=$(vec modelId)
V_BID=$(vec 'bidId = ') V_SID=$(vec 'sessionId = ')
V_APPROVAL=$(vec 'approval (abi') V_SIG=$(vec approvalSig)
eq "openSession calldata equals the vector byte for byte" \
  "$("$CAST" calldata "openSession(address,uint256,bool,bytes,bytes)" "$V_USER" 1000000000000000000 false "$V_APPROVAL" "$V_SIG")" \
  "$(vec 'openSession calldata')"

chain_seed_provider 127.0.0.1:4001 >/dev/null
eq "seeded bid reads back with provider, model and price" \
  "$(chain_call --json "$DIAMOND" "getBid(bytes32)((address,bytes32,uint256,uint256,uint128,uint128))" "$SEED_BID" | tr -d ' \n' | cut -d, -f1-4)" \
  "[[\"$SEED_PROVIDER\",\"$SEED_MODEL\",$SEED_PRICE,0"

if chain_stop && ! kill -0 "$CHAIN_PID" 2>/dev/null; then t_pass "devnet stop ends anvil by PID"; else t_fail "devnet stop ends anvil by PID"; fi
echo "# runtime $((SECONDS - t_start)) s"
t_done
