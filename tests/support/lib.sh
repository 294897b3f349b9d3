# tests/support/lib.sh: TAP helpers for the integration tests (bash). Source it first.
#
#   t_run CMD...        run CMD; sets T_RC, T_OUT (stdout), T_ERR (stderr)
#   t_ok DESC COND...   one test: passes when the command COND... succeeds
#   t_expect DESC RC ERR_SUBSTR CMD...   runs CMD, expects exit RC and ERR_SUBSTR in stderr
#   t_bg NAME CMD...    start CMD in the background; stopped by PID at exit
#   t_done              print the plan and exit non-zero if anything failed
# Every test gets a scratch directory $T_DIR, removed at exit.
set -uo pipefail

T_N=0
T_FAILED=0
T_PIDS=()
T_ROOT=${MORGATE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
T_BUILD=${MORGATE_BUILD:-build/debug}
[[ $T_BUILD = /* ]] || T_BUILD=$T_ROOT/$T_BUILD
T_DIR=$(mktemp -d "${TMPDIR:-/tmp}/morgate-it-XXXXXX")

t_cleanup() {
  local p
  for p in "${T_PIDS[@]}"; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  [[ -n ${T_KEEP:-} ]] || rm -rf "$T_DIR"
}
trap t_cleanup EXIT

t_pass() {
  T_N=$((T_N + 1))
  echo "ok $T_N - $1"
}

t_fail() {
  T_N=$((T_N + 1))
  T_FAILED=$((T_FAILED + 1))
  echo "not ok $T_N - $1"
  shift
  local l
  for l in "$@"; do printf '#   %s\n' "$l"; done
}

t_run() {
  local o=$T_DIR/.out e=$T_DIR/.err
  "$@" >"$o" 2>"$e"
  T_RC=$?
  T_OUT=$(cat "$o")
  T_ERR=$(cat "$e")
}

t_ok() {
  local desc=$1
  shift
  if "$@"; then t_pass "$desc"; else t_fail "$desc" "failed: $*"; fi
}

t_expect() {
  local desc=$1 rc=$2 sub=$3
  shift 3
  t_run "$@"
  local lines
  lines=$(printf '%s' "$T_ERR" | grep -c '')
  if [[ $T_RC -ne $rc ]]; then
    t_fail "$desc" "exit $T_RC, wanted $rc" "stderr: $T_ERR" "stdout: ${T_OUT:0:300}"
  elif [[ -n $sub && $T_ERR != *"$sub"* ]]; then
    t_fail "$desc" "stderr lacks '$sub'" "stderr: $T_ERR"
  elif [[ $rc -ne 0 && $rc -ne 1 && $lines -ne 1 ]]; then
    t_fail "$desc" "wanted one line on stderr, got $lines" "stderr: $T_ERR"
  else
    t_pass "$desc"
  fi
}

t_bg() {
  local name=$1
  shift
  "$@" >"$T_DIR/$name.out" 2>"$T_DIR/$name.err" &
  T_PIDS+=($!)
  T_LAST_PID=$!
}

t_now_ms() { date +%s%3N; }

t_done() {
  echo "1..$T_N"
  ((T_FAILED == 0))
}
