# shellcheck shell=bash
# tests/support/market.sh: the marketplace end to end, every component real (bash). Source it
# after tests/support/lib.sh; it sources chain.sh. Everything binds 127.0.0.1 on free ports and
# every process is stopped by PID at exit (T_PIDS).
#
# Accounts (anvil's, see chain.sh): 0 deploys and holds the MOR supply; providers are accounts
# 1 and 3 (distinct, so two providers can bid on one model; account 0 can be a third); the
# gateway's wallet is account 2 (funded with MOR by every chain_seed_provider).
#
#   t_skip DESC REASON          a TAP skip ("ok N - DESC # SKIP REASON"; tests/run counts it)
#   mk_known_bug DESC BUG [DETAIL...]
#       a check that fails because of a known, reported bug in the component under test: a skip
#       naming BUG (so CI stays green while it is open), or with MORGATE_MARKET_STRICT=1 a failure
#       with the details. Use it only in the else-branch of a check that stays in place.
#   mk_free_port                a free TCP port on 127.0.0.1
#   mk_wait_http URL [SECS]     poll URL until it answers (default 5 s)
#   mk_poll SECS CMD...         run CMD every 0.1 s until it succeeds; rc 1 after SECS
#   mk_json EXPR                JSON on stdin as `o`; prints the JS expression EXPR
#   mk_redis_start              redis-server; exports MK_REDIS_URL, MK_REDIS_PID
#   mk_backend NAME             a mock_openai backend; MK_BPORT[NAME], MK_BPID[NAME]
#   mk_backend_anthropic NAME   a pv_mock_anthropic backend (claude-* models); MK_BPORT[NAME]
#   mk_backend_stat NAME FIELD  one field of that backend's /stats (requests, cancelled, open)
#   mk_provider_port NAME       reserve the node's port: MK_PPORT[NAME], MK_EP[NAME]=127.0.0.1:P
#   mk_offer ACCT ENDPOINT MODEL [PRICE]
#       on chain: the first offer of MODEL registers it (chain_seed_provider, owner ACCT); later
#       offers register provider ACCT if needed and post its bid on the same model id. Sets
#       MK_MODEL_ID[MODEL], MK_BID[MODEL/ACCT].
#   mk_provider_start NAME ACCT BACKEND "MODEL=BACKEND_MODEL ..."
#       morgate-provider NAME with account ACCT's wallet on MK_PPORT[NAME], each on-chain MODEL
#       mapped to BACKEND_MODEL of mock backend BACKEND (mock_openai picks its behaviour by
#       model name); BACKEND_MODEL@OTHER uses backend OTHER; a claude-* model is served with
#       apiType claudeai (pv_mock_anthropic). Waits until the node answers a ping. MK_PVPID[NAME].
#   mk_provider_kill NAME [SIG]  SIGKILL (default) the node and wait for it
#   mk_keystore                 key store at $MORGATE_DB, tenant acme; MK_KEY1..MK_KEY4 API keys
#   mk_wallet                   the gateway wallet (account 2): MK_WALLET, MK_WALLET_PASS, MK_WALLET_ADDR
#   mk_gateway_config NAME [MARKET_JSON] [TOP_JSON]
#       $T_DIR/NAME.json: listen on a new free port (MK_GPORT[NAME]), the key store, Redis when
#       started, a direct mock backend (model "mock-instant" -> backend "direct", for the
#       benchmark ratio; needs mk_backend direct) and the marketplace section of issue 6 (rpc
#       $MK_GW_RPC if set, else the chain's); the keys of the JSON objects MARKET_JSON (e.g.
#       '{"models": {"m": {"min_idle": 1}}}') and TOP_JSON replace the defaults.
#   mk_gateway_spawn NAME       start it without waiting (MK_GWPID[NAME])
#   mk_gateway_start NAME       start it (same DB, wallet, port on a restart); waits for
#                               /healthz; MK_GWPID[NAME], MK_G[NAME]=http://127.0.0.1:PORT
#   mk_wait_model NAME MODEL [SECS]   poll NAME's /v1/models until MODEL is listed
#   mk_chat NAME KEY MODEL CONTENT [stream]  POST /v1/chat/completions with curl: MK_STATUS,
#                               MK_BODY (the whole body; SSE as received)
#   mk_user_sessions            session ids of the gateway wallet on chain (getUserSessions), one a line
#   mk_session FIELD SID        one field of getSession: user bidId stake closeoutType openedAt
#                               endsAt closedAt isActive
#   mk_opened_count             how many SessionOpened events the chain has for the wallet
#   mk_ctl_sessions             `morgatectl sessions list --json` on the gateway's key store
#   mk_ctl_state SID            the state that listing gives session SID ("" if absent)
#   mk_model_sessions MODEL     the wallet's sessions on chain on one of MODEL's bids, one a line
#   mk_provider_stat FIELD MODEL ACCT   getProviderModelStats: successCount, totalCount, totalDuration
#   mk_gateway_kill NAME [SIG]  SIGKILL (default) the gateway and wait for it
#   mk_sse_text                 an SSE body on stdin -> the concatenated delta contents
#   mk_require [BIN...]         skip the whole file (one TAP skip) when a binary is missing or the
#                               gateway predates its marketplace section
#   mk_base                     chain, Redis, key store and wallet, or fail the file cleanly
# Tests wait only for PIDs they started themselves (`wait PID`): a bare `wait` would also wait for
# the background servers.
set -uo pipefail

[[ $(type -t chain_start) == function ]] || source "$T_ROOT/tests/support/chain.sh"

MK_CTL=$T_BUILD/bin/morgatectl
MK_GW=$T_BUILD/bin/morgate
MK_PROV=$T_BUILD/bin/morgate-provider
MK_MOCK=$T_BUILD/tests/mock_openai
MK_FAULT=$T_BUILD/tests/tcp_fault
MK_PVLINK=$T_BUILD/tests/pv_link
export MORGATE_DB=$T_DIR/var/ks.db
unset MORGATE_PEPPER_FILE MORGATE_LISTEN MORGATE_REDIS_URL MORGATE_ADMIN_LISTEN MORGATE_WALLET_PASSPHRASE

declare -A MK_BPORT MK_BPID MK_PPORT MK_EP MK_PVPID MK_MODEL_ID MK_BID MK_GPORT MK_GWPID MK_G MK_REGISTERED
MK_REDIS_URL=""
# SessionOpened(address indexed user, bytes32 indexed sessionId, address indexed providerId)
MK_TOPIC_OPENED=0x2bd7c890baf595977d256a6e784512c873ac58ba612b4895dbb7f784bfbf4839

t_skip() {
  T_N=$((T_N + 1))
  echo "ok $T_N - $1 # SKIP $2"
}

mk_known_bug() {
  local desc=$1 bug=$2
  shift 2
  if [[ ${MORGATE_MARKET_STRICT:-} == 1 ]]; then
    t_fail "$desc" "known bug: $bug" "$@"
  else
    t_skip "$desc" "known bug: $bug (MORGATE_MARKET_STRICT=1 runs it as a check)"
    local l
    for l in "$@"; do printf '#   %s\n' "$l"; done
  fi
}

mk_free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

mk_wait_http() {
  local i n=$((${2:-5} * 20))
  for ((i = 0; i < n; i++)); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.05
  done
  return 1
}

mk_poll() {
  local secs=$1 end
  shift
  end=$(($(date +%s%3N) + secs * 1000))
  while (($(date +%s%3N) < end)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

mk_json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let o;try{o=JSON.parse(s)}catch(e){console.log("NOT JSON: "+s.slice(0,200));process.exit(1)}const v=eval(process.argv[1]);console.log(typeof v==="object"?JSON.stringify(v):v)})' "$1"; }

# ---- redis, backends --------------------------------------------------------------------------
mk_redis_start() {
  local port
  port=$(mk_free_port)
  t_bg redis redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no
  MK_REDIS_PID=$T_LAST_PID
  MK_REDIS_URL=redis://127.0.0.1:$port/0
  mk_poll 5 bash -c "redis-cli -p $port ping 2>/dev/null | grep -q PONG"
}

mk_backend() {
  local port
  port=$(mk_free_port)
  t_bg "backend-$1" "$MK_MOCK" "$port"
  MK_BPORT[$1]=$port
  MK_BPID[$1]=$T_LAST_PID
  mk_wait_http "http://127.0.0.1:$port/stats"
}

mk_backend_anthropic() {
  local port
  port=$(mk_free_port)
  t_bg "backend-$1" "$T_BUILD/tests/pv_mock_anthropic" "$port"
  MK_BPORT[$1]=$port
  MK_BPID[$1]=$T_LAST_PID
  mk_poll 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
}

mk_backend_stat() {
  curl -s --max-time 2 "http://127.0.0.1:${MK_BPORT[$1]}/stats" | mk_json "o.$2"
}

# ---- chain: models, providers, bids -------------------------------------------------------------
mk_provider_port() {
  MK_PPORT[$1]=$(mk_free_port)
  MK_EP[$1]=127.0.0.1:${MK_PPORT[$1]}
}

mk_offer() {
  local acct=$1 ep=$2 model=$3 price=${4:-10000000000000} key addr nonce
  if [[ -z ${MK_MODEL_ID[$model]:-} ]]; then
    chain_seed_provider "$ep" --provider "$acct" --user 2 --model "$model" --price "$price" >/dev/null || return 1
    MK_MODEL_ID[$model]=$SEED_MODEL
    MK_BID[$model/$acct]=$SEED_BID
    MK_REGISTERED[$acct]=$ep
    return 0
  fi
  key=CHAIN_KEY$acct
  key=${!key}
  addr=CHAIN_ADDR$acct
  addr=${!addr}
  if [[ ${MK_REGISTERED[$acct]:-} != "$ep" ]]; then
    ((acct == 0)) || chain_fund "$addr" 100000000000000000000 || return 1
    chain_send "$key" "$MOR" "approve(address,uint256)" "$DIAMOND" \
      115792089237316195423570985008687907853269984665640564039457584007913129639935 >/dev/null || return 1
    chain_send "$key" "$DIAMOND" "providerRegister(address,uint256,string)" "$addr" 10000000000000000000 "$ep" >/dev/null || return 1
    MK_REGISTERED[$acct]=$ep
  fi
  # The bid id is getBidId(provider, model, nonce), the nonce in the MarketplaceBidPosted data.
  nonce=$(chain_send "$key" "$DIAMOND" "postModelBid(address,bytes32,uint256)" "$addr" "${MK_MODEL_ID[$model]}" "$price" |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const l=JSON.parse(s).logs.find(l=>l.topics[0]===
      "0xfc422bb61cd73bc76f27eecf69cce3db0b05d39769ca3ed0fb314a3d04bff6f6");console.log(BigInt(l.data).toString())})') || return 1
  MK_BID[$model/$acct]=$(chain_call "$DIAMOND" "getBidId(address,bytes32,uint256)(bytes32)" "$addr" "${MK_MODEL_ID[$model]}" "$nonce")
}

mk_provider_start() {
  local name=$1 acct=$2 backend=$3 maps=$4 dir=$T_DIR/pv-$1 key sep="" m
  key=CHAIN_KEY$acct
  key=${!key}
  mkdir -p "$dir"
  if [[ ! -f $dir/provider.json ]]; then
    {
      echo '{"models":['
      local bm be
      for m in $maps; do
        bm=${m#*=} be=$backend
        [[ $bm == *@* ]] && be=${bm#*@} bm=${bm%@*}
        if [[ $bm == claude-* ]]; then
          printf '%s{"modelId":"%s","modelName":"%s","apiType":"claudeai","apiUrl":"http://127.0.0.1:%s/v1/messages","apiKey":"test-anthropic-key"}\n' \
            "$sep" "${MK_MODEL_ID[${m%%=*}]}" "$bm" "${MK_BPORT[$be]}"
        else
          printf '%s{"modelId":"%s","modelName":"%s","apiType":"openai","apiUrl":"http://127.0.0.1:%s/v1/chat/completions","apiKey":"sk-backend"}\n' \
            "$sep" "${MK_MODEL_ID[${m%%=*}]}" "$bm" "${MK_BPORT[$be]}"
        fi
        sep=,
      done
      echo ']}'
    } >"$dir/models.json"
    echo pw >"$dir/pass"
    printf '%s\n' "$key" | MORGATE_WALLET_PASSPHRASE=pw "$MK_CTL" wallet import --wallet "$dir/wallet.key" --weak-kdf >/dev/null || return 1
    cat >"$dir/provider.json" <<JSON
{"listen":"${MK_EP[$name]}","admin_listen":"127.0.0.1:$(mk_free_port)","models_config":"models.json",
 "wallet":"wallet.key","passphrase_file":"pass","rpc":"$CHAIN_RPC","chain_id":$CHAIN_ID,
 "diamond":"$DIAMOND","mor":"$MOR","db":"provider.db","backend_timeout_ms":8000,
 "drain_timeout_ms":2000,"log_level":"info"}
JSON
  fi
  t_bg "provider-$name" "$MK_PROV" --config "$dir/provider.json"
  MK_PVPID[$name]=$T_LAST_PID
  mk_poll 10 "$MK_PVLINK" ping "${MK_EP[$name]}" >/dev/null 2>&1
}

mk_provider_kill() {
  kill -"${2:-KILL}" "${MK_PVPID[$1]}" 2>/dev/null
  wait "${MK_PVPID[$1]}" 2>/dev/null
  return 0
}

# ---- key store, wallet, gateway -------------------------------------------------------------------
mk_keystore() {
  "$MK_CTL" init >/dev/null || return 1
  "$MK_CTL" tenant create acme --rpm "${MK_TENANT_RPM:-100000}" >/dev/null || return 1
  local i
  for i in 1 2 3 4; do
    printf -v "MK_KEY$i" '%s' "$("$MK_CTL" key create --tenant acme --name "k$i" | sed -n 's/^key: //p')"
  done
  [[ -n $MK_KEY4 ]]
}

mk_wallet() {
  MK_WALLET=$T_DIR/gw-wallet.key
  MK_WALLET_PASS=$T_DIR/gw-wallet.pass
  MK_WALLET_ADDR=$CHAIN_ADDR2
  echo gw-pass >"$MK_WALLET_PASS"
  printf '%s\n' "$CHAIN_KEY2" | MORGATE_WALLET_PASSPHRASE=gw-pass "$MK_CTL" wallet import --wallet "$MK_WALLET" --weak-kdf >/dev/null
}

mk_gateway_config() {
  local name=$1 market=${2:-"{}"} top=${3:-"{}"}
  MK_GPORT[$name]=$(mk_free_port)
  MK_G[$name]=http://127.0.0.1:${MK_GPORT[$name]}
  node -e '
    const [file, port, db, redis, direct, rpc, cid, diamond, mor, wallet, pass, market, top] = process.argv.slice(1);
    const c = {
      listen: "127.0.0.1:" + port, threads: 2, log_level: "info",
      keystore: { path: db, poll_ms: 100 },
      streaming: { keepalive_ms: 1000 }, usage_flush_ms: 200, drain_timeout_ms: 2000,
      backends: [{ name: "direct", base_url: "http://127.0.0.1:" + direct + "/v1" }],
      models: [{ name: "mock-instant", backend: "direct" }],
      marketplace: {
        rpc: [rpc], chain_id: Number(cid), diamond, mor, wallet, wallet_passphrase_file: pass,
        session_seconds: 600, direct_payment: false, max_price_per_second: "1000000000000000000",
        allow_providers: [], deny_providers: [], models: {}, aliases: {},
        request_deadline_ms: 30000, catalog_refresh_ms: 1000, bench_ms: 30000, workers: 64,
        ...JSON.parse(market) },
      ...JSON.parse(top) };
    if (redis) c.redis_url = redis;
    require("fs").writeFileSync(file, JSON.stringify(c, null, 1));' \
    "$T_DIR/$name.json" "${MK_GPORT[$name]}" "$MORGATE_DB" "$MK_REDIS_URL" "${MK_BPORT[direct]:-1}" \
    "${MK_GW_RPC:-$CHAIN_RPC}" "$CHAIN_ID" "$DIAMOND" "$MOR" "$MK_WALLET" "$MK_WALLET_PASS" "$market" "$top"
}

mk_gateway_spawn() {
  t_bg "gw-$1" "$MK_GW" --config "$T_DIR/$1.json"
  MK_GWPID[$1]=$T_LAST_PID
}

mk_gateway_start() {
  mk_gateway_spawn "$1"
  mk_wait_http "${MK_G[$1]}/healthz" 10
}

mk_gateway_kill() {
  kill -"${2:-KILL}" "${MK_GWPID[$1]}" 2>/dev/null
  wait "${MK_GWPID[$1]}" 2>/dev/null
  return 0
}

# (NUL bytes are dropped here: whether the listing is valid JSON is test_market_basic's check)
mk_has_model() {
  curl -s --max-time 2 -H "Authorization: Bearer $MK_KEY1" "${MK_G[$1]}/v1/models" | tr -d '\000' |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{process.exit(JSON.parse(s).data.some(m=>m.id===process.argv[1])?0:1)}catch(e){process.exit(1)}})' "$2"
}

mk_wait_model() { mk_poll "${3:-20}" mk_has_model "$1" "$2"; }

mk_chat() {
  local name=$1 key=$2 model=$3 content=$4 stream=${5:-} body out
  body=$(node -e 'const [m,c,s]=process.argv.slice(1);const b={model:m,messages:[{role:"user",content:c}]};if(s)b.stream=true;console.log(JSON.stringify(b))' "$model" "$content" "$stream")
  out=$(curl -s -N --max-time 30 -w '\n%{http_code}' -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d "$body" "${MK_G[$name]}/v1/chat/completions")
  MK_STATUS=${out##*$'\n'}
  MK_BODY=${out%$'\n'*}
}

# SSE body -> the concatenated delta text
mk_sse_text() {
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let t="";for(const l of s.split("\n")){if(!l.startsWith("data: ")||l==="data: [DONE]")continue;try{const o=JSON.parse(l.slice(6));t+=(o.choices&&o.choices[0]&&o.choices[0].delta&&o.choices[0].delta.content)||""}catch(e){}}console.log(t)})'
}

# ---- chain reads ------------------------------------------------------------------------------------
mk_user_sessions() {
  chain_call "$DIAMOND" "getUserSessions(address,uint256,uint256)(bytes32[],uint256)" "$MK_WALLET_ADDR" 0 100 |
    head -1 | tr -d '[] ' | tr ',' '\n' | grep '^0x'
}

mk_session() {
  local f=$1 sid=$2
  chain_call "$DIAMOND" "getSession(bytes32)((address,bytes32,uint256,bytes,uint256,uint256,uint128,uint128,uint128,bool,bool))" "$sid" |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
      const t=s.trim().replace(/^\(|\)$/g,"").split(", ").map(x=>x.split(" ")[0]);
      const k={user:0,bidId:1,stake:2,closeoutType:4,openedAt:6,endsAt:7,closedAt:8,isActive:9};
      console.log(t[k[process.argv[1]]])})' "$f"
}

mk_opened_count() {
  local topic=0x000000000000000000000000${MK_WALLET_ADDR#0x}
  "$CAST" logs --rpc-url "$CHAIN_RPC" --from-block 0 --address "$DIAMOND" --json \
    "$MK_TOPIC_OPENED" "${topic,,}" 2>/dev/null | mk_json 'o.length'
}

mk_ctl_sessions() { "$MK_CTL" --json sessions list; }

# mk_ctl_state SID: the state `morgatectl sessions list --json` gives session SID ("" if absent)
mk_ctl_state() {
  mk_ctl_sessions 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let a;try{a=JSON.parse(s)}catch(e){return}
    if(!Array.isArray(a))a=a.sessions||[];const x=a.find(r=>String(r.id||r.session_id||"").toLowerCase()===process.argv[1].toLowerCase());
    console.log(x?x.state:"")})' "$1"
}

# mk_model_sessions MODEL: the wallet's sessions (on chain) whose bid is one of MODEL's, one a line
mk_model_sessions() {
  local sid bid k bids=" "
  for k in "${!MK_BID[@]}"; do [[ $k == "$1/"* ]] && bids+="${MK_BID[$k],,} "; done
  for sid in $(mk_user_sessions); do
    bid=$(mk_session bidId "$sid")
    [[ $bids == *" ${bid,,} "* ]] && echo "$sid"
  done
}

# mk_provider_stat FIELD MODEL ACCT: getProviderModelStats(model, provider) field
# (successCount, totalCount)
mk_provider_stat() {
  local addr=CHAIN_ADDR$3
  chain_call "$DIAMOND" "getProviderModelStats(bytes32,address)(((int64,int64),(int64,int64),uint32,uint32,uint32))" \
    "${MK_MODEL_ID[$2]}" "${!addr}" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
      const n=s.replace(/\[[^\]]*\]/g,"").replace(/[()]/g," ").split(/[ ,]+/).filter(Boolean).map(x=>x.trim());
      const k={totalDuration:4,successCount:5,totalCount:6};console.log(n[k[process.argv[1]]])})' "$1"
}

# The common set-up: chain, redis, key store, wallet. Fails the test file cleanly when a
# component cannot start.
mk_base() {
  chain_start || { t_fail "devnet starts"; t_done; exit 1; }
  mk_redis_start || { t_fail "redis-server starts"; t_done; exit 1; }
  mk_keystore || { t_fail "key store with keys"; t_done; exit 1; }
  mk_wallet || { t_fail "gateway wallet imported"; t_done; exit 1; }
}

# Binaries the marketplace tests need; a missing one (a component not built yet) skips the file.
mk_require() {
  local b
  for b in "$MK_GW" "$MK_PROV" "$MK_CTL" "$MK_MOCK" "$MK_PVLINK" "$@"; do
    [[ -x $b ]] || { t_skip "marketplace end to end" "$b not built"; t_done; exit 0; }
  done
  # A gateway built before its marketplace support (issue 6) refuses the section: skip, saying so.
  printf '{"marketplace": {"rpc": ["http://127.0.0.1:1"], "chain_id": 31337, "diamond": "0x%040d", "mor": "0x%040d", "wallet": "w", "wallet_passphrase_file": "p"}}' 0 0 >"$T_DIR/probe.json"
  local probe
  probe=$("$MK_CTL" config check "$T_DIR/probe.json" 2>&1)
  if [[ $probe == *'marketplace: unknown option'* ]]; then
    t_skip "marketplace end to end" "this gateway has no marketplace support yet (config: 'marketplace: unknown option')"
    t_done
    exit 0
  fi
}
