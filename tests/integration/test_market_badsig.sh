#!/usr/bin/env bash
# A provider whose signatures are wrong is abandoned (issue 6). Two real morgate-provider nodes bid
# on one model; each is registered on chain behind a tcp_fault proxy (tests/support/bin_tcp_fault.c).
# The proxies share a claim file: the first one the gateway connects to corrupts every MOR-RPC
# signature from then on (one hex digit), the other passes bytes through, so whichever provider
# the gateway tries first turns bad. The request must be served by the other provider, no session
# may be opened with the bad one, and later requests must not go back to it.
source "$(dirname "$0")/../support/lib.sh"
source "$(dirname "$0")/../support/market.sh"

mk_require "$MK_FAULT"
mk_base
mk_backend bA && mk_backend bB || { t_fail "mock backends start"; t_done; exit 1; }
mk_provider_port pA
mk_provider_port pB
XA=$(mk_free_port)
XB=$(mk_free_port)
t_bg faultA "$MK_FAULT" "$XA" "${MK_EP[pA]}" corrupt-sig --claim "$T_DIR/claim"
t_bg faultB "$MK_FAULT" "$XB" "${MK_EP[pB]}" corrupt-sig --claim "$T_DIR/claim"
mk_offer 1 "127.0.0.1:$XA" m-chat && mk_offer 3 "127.0.0.1:$XB" m-chat || { t_fail "offers on chain"; t_done; exit 1; }
mk_provider_start pA 1 bA "m-chat=mock-chat" && mk_provider_start pB 3 bB "m-chat=mock-chat" ||
  { t_fail "provider nodes start"; t_done; exit 1; }
t_ok "no proxy has claimed yet (the nodes were pinged directly)" test ! -e "$T_DIR/claim"
mk_gateway_config gw
mk_gateway_start gw || { t_fail "gateway starts" "$(tail -5 "$T_DIR/gw-gw.err")"; t_done; exit 1; }
mk_wait_model gw m-chat 20 || { t_fail "catalogue lists m-chat"; t_done; exit 1; }

mk_chat gw "$MK_KEY1" m-chat "who answers" stream
text=$(mk_sse_text <<<"$MK_BODY")
if [[ -e $T_DIR/claim ]]; then
  if grep -q 'claimed' "$T_DIR/faultA.err"; then bad=A good=B; else bad=B good=A; fi
  t_pass "the gateway contacted provider $bad first (its proxy now corrupts signatures)"
else
  bad="" good=""
  t_fail "the gateway contacted a provider" "no claim file" "${MK_BODY:0:300}"
fi
if [[ $MK_STATUS == 200 && $text == "w0 w1 w2 w3 w4 " && $(grep '^data: ' <<<"$MK_BODY" | tail -1) == "data: [DONE]" ]]; then
  t_pass "the request is served in full despite the bad provider"
else t_fail "request with a bad provider in the list" "status $MK_STATUS text '$text'" "${MK_BODY:0:500}" "$(grep -iE 'sign|fail|warn' "$T_DIR/gw-gw.err" | tail -5)"; fi
if [[ -n $bad ]]; then
  ncorrupt=$(grep -c 'corrupted' "$T_DIR/fault$bad.err")
  t_ok "the bad provider's replies really were corrupted ($ncorrupt signatures)" test "$ncorrupt" -ge 1
  t_ok "the good provider's backend served it" test "$(mk_backend_stat "b$good" requests)" = 1
  t_ok "the bad provider's backend saw nothing" test "$(mk_backend_stat "b$bad" requests)" = 0
  acct=$([[ $bad == A ]] && echo 1 || echo 3)
  badbid=${MK_BID[m-chat/$acct]}
  sessions_bad=0
  for sid in $(mk_user_sessions); do [[ $(mk_session bidId "$sid") == "$badbid" ]] && sessions_bad=$((sessions_bad + 1)); done
  t_ok "no session opened with the provider whose signatures are wrong" test "$sessions_bad" = 0

  # Abandoned: three more requests (two at once) are served without touching the bad provider.
  before=$ncorrupt
  (mk_chat gw "$MK_KEY2" m-chat "again" && echo "$MK_STATUS" >"$T_DIR/bg.status") &
  bgpid=$!
  mk_chat gw "$MK_KEY3" m-chat "again"
  st2=$MK_STATUS
  wait "$bgpid"
  mk_chat gw "$MK_KEY4" m-chat "and again" stream
  t_ok "later requests are served (status $(cat "$T_DIR/bg.status") $st2 $MK_STATUS)" \
    test "$(cat "$T_DIR/bg.status")/$st2/$MK_STATUS" = 200/200/200
  t_ok "and never go back to the bad provider (no new corrupted reply)" test "$(grep -c 'corrupted' "$T_DIR/fault$bad.err")" = "$before"
  t_ok "its backend still saw nothing" test "$(mk_backend_stat "b$bad" requests)" = 0
fi
t_done
