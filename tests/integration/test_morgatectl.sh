#!/usr/bin/env bash
# morgatectl end to end on real SQLite files: every command, --json, exit statuses, secrets never
# stored or shown twice, every bad input with a one-line message and nothing written, a locked,
# read-only, truncated, newer or hand-edited store, concurrent writers with a live verifier, and a
# revocation seen by a running reader process within 1 s.
source "$(dirname "$0")/../support/lib.sh"

CTL=$T_BUILD/bin/morgatectl
WATCH=$T_BUILD/tests/ks_watch
DB=$T_DIR/var/ks.db
export MORGATE_DB=$DB
unset MORGATE_PEPPER_FILE
# the migrations this build embeds: versions 1..LATEST
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LATEST=$(ls "$ROOT"/migrations/[0-9][0-9][0-9][0-9]_*.sql | wc -l)
ALL_VERSIONS=$(seq -s, 1 "$LATEST")
ctl() { "$CTL" "$@"; }
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const o=JSON.parse(s);console.log(eval(process.argv[1]))})' "$1"; }
dump() { sqlite3 "$DB" .dump | sha256sum; }

# ---- init ----
t_expect "init creates a store" 0 "" ctl init
t_ok "database and pepper are 0600" test "$(stat -c %a "$DB")" = 600 -a "$(stat -c %a "$T_DIR/var/ks.pepper")" = 600
t_expect "init is safe to re-run" 0 "" ctl init
pepper_before=$(sha256sum <"$T_DIR/var/ks.pepper")
t_ok "re-run reports the latest schema" test "$(ctl --json init | json o.schema_version)" = "$LATEST"
t_ok "re-run keeps the same pepper" test "$(sha256sum <"$T_DIR/var/ks.pepper")" = "$pepper_before"
t_expect "check on an intact store" 0 "" ctl check
t_expect "migrate when up to date" 0 "" ctl migrate
t_ok "migrate says up to date" grep -q "up to date" <<<"$T_OUT"

# ---- tenants ----
t_expect "tenant create with limits" 0 "" ctl tenant create acme --rpm 60 --tpm 100000 --concurrency 4 --monthly-tokens 5000000
t_ok "tenant show json has the limits" test "$(ctl --json tenant show acme | json '[o.rpm,o.tpm,o.concurrency,o.monthly_tokens,o.status].join()')" = "60,100000,4,5000000,active"
t_expect "duplicate tenant is a conflict" 4 "already exists" ctl tenant create acme
t_expect "tenant update clears and sets" 0 "" ctl tenant update acme --rpm none --tpm=500
t_ok "update took effect" test "$(ctl --json tenant show acme | json '[o.rpm,o.tpm].join()')" = ",500"
t_expect "tenant disable" 0 "" ctl tenant disable acme
t_ok "disabled shows" test "$(ctl --json tenant show acme | json o.status)" = disabled
t_expect "tenant enable" 0 "" ctl tenant enable acme
t_expect "tenant show unknown is not found" 3 "'ghost' not found" ctl tenant show ghost
ctl tenant create beta >/dev/null
t_ok "tenant list shows both" test "$(ctl --json tenant list | json 'o.map(t=>t.name).join()')" = "acme,beta"
t_ok "tenant list table has a header" grep -q '^NAME *STATUS' <<<"$(ctl tenant list)"

# ---- keys ----
t_run ctl --json key create --tenant acme --name "ci bot" --models llama-3,mistral --expires 30d --rpm 10
KEY=$(json o.key <<<"$T_OUT")
ID=$(json o.id <<<"$T_OUT")
SECRET=${KEY:20:43}
t_ok "key create prints a well-formed key once" test "$T_RC" = 0 -a "${#KEY}" = 69 -a "${KEY:0:7}" = sk-mor- -a "$ID" = "${KEY:7:12}"
t_ok "key create json has the record" test "$(json '[o.tenant,o.name,o.models.join("+"),o.rpm,o.status].join()' <<<"$T_OUT")" = "acme,ci bot,llama-3+mistral,10,active"
t_run ctl key create --tenant acme
t_ok "human key create shows the key and a warning" grep -q "only time the key is shown" <<<"$T_OUT"
KEY2=$(sed -n 's/^key: //p' <<<"$T_OUT")
no_secret() { local out; out=$("$@") && [[ -n $out && $out != *"$SECRET"* && $out == *"$ID"* ]]; }
t_ok "key list never shows a secret" no_secret ctl key list
t_ok "key list --json never shows a secret" no_secret ctl --json key list
t_ok "key show never shows a secret" no_secret ctl key show "$ID"
t_ok "key show --json never shows a secret" no_secret ctl --json key show "$ID"
t_ok "the store never holds a secret" bash -c "! cat '$DB'* | grep -aq '$SECRET'"
t_ok "key list filters by tenant" test "$(ctl --json key list --tenant beta | json o.length)" = 0
t_ok "key list of acme has both" test "$(ctl --json key list --tenant acme | json o.length)" = 2
t_expect "key verify valid" 0 "" bash -c "echo '$KEY' | '$CTL' key verify"
t_ok "verify names the key and tenant" grep -q "valid: key $ID of tenant 'acme'" <<<"$T_OUT"
t_expect "key verify with a typo is rejected" 1 "" bash -c "echo '${KEY}x' | '$CTL' key verify"
t_ok "verdict says malformed" grep -q "malformed" <<<"$T_OUT"
t_expect "a key on the command line is refused" 2 "unexpected argument" ctl key verify "$KEY"
t_expect "key update" 0 "" ctl key update "$ID" --name "renamed" --models none --concurrency 2
t_ok "update took effect" test "$(ctl --json key show "$ID" | json '[o.name,o.models.length,o.concurrency].join()')" = "renamed,0,2"
t_expect "key update cannot move a key to another tenant" 2 "unknown option" ctl key update "$ID" --tenant beta
t_expect "key rotate with grace" 0 "" ctl --json key rotate "$ID" --grace 1h
NEWKEY=$(json o.key <<<"$T_OUT")
t_ok "rotate keeps the id" test "${NEWKEY:7:12}" = "$ID" -a "$NEWKEY" != "$KEY"
t_expect "new secret verifies" 0 "" bash -c "echo '$NEWKEY' | '$CTL' key verify"
t_expect "old secret verifies during grace" 0 "" bash -c "echo '$KEY' | '$CTL' key verify"
t_expect "key revoke with a reason" 0 "" ctl key revoke "$ID" --reason "leaked in a CI log"
t_ok "revoked key shows reason" test "$(ctl --json key show "$ID" | json '[o.status,o.revoke_reason].join()')" = "revoked,leaked in a CI log"
t_expect "revoked key is rejected" 1 "" bash -c "echo '$NEWKEY' | '$CTL' key verify"
t_ok "verdict says revoked" grep -q "revoked" <<<"$T_OUT"
t_expect "revoking twice is a conflict" 4 "already revoked" ctl key revoke "$ID"
t_expect "rotating a revoked key is a conflict" 4 "only active keys" ctl key rotate "$ID"
ctl tenant disable acme >/dev/null
t_expect "key of a disabled tenant is rejected" 1 "" bash -c "echo '$KEY2' | '$CTL' key verify"
t_ok "verdict says tenant disabled" grep -q "tenant disabled" <<<"$T_OUT"
ctl tenant enable acme >/dev/null
t_expect "key show unknown id" 3 "not found" ctl key show AAAAAAAAAAAA
t_expect "key create for unknown tenant" 3 "'ghost' not found" ctl key create --tenant ghost

# ---- usage (rows as the gateway's batched writer leaves them) ----
sqlite3 "$DB" "INSERT INTO usage_daily VALUES ('$ID','2026-01-01','llama-3',3,30,60),('$ID','2026-01-02','llama-3',1,10,20),('$ID','2026-01-02','mistral',2,5,5)"
t_ok "usage by day" test "$(ctl --json usage --tenant acme | json 'o.map(r=>r.group+":"+r.requests).join()')" = "2026-01-01:3,2026-01-02:3"
t_ok "usage by model" test "$(ctl --json usage --key "$ID" --by model | json 'o.map(r=>r.group+":"+r.prompt_tokens).join()')" = "llama-3:40,mistral:5"
t_ok "usage since a day" test "$(ctl --json usage --since 2026-01-02 | json o.length)" = 1
t_ok "usage table" grep -q '^DAY *REQUESTS *PROMPT_TOKENS *COMPLETION_TOKENS' <<<"$(ctl usage)"
t_expect "usage of an unknown tenant" 3 "not found" ctl usage --tenant ghost

# ---- bad input: a clear one-line message, a non-zero exit, nothing written ----
before=$(dump)
bad() { t_expect "refused: $1" "$2" "$3" ctl "${@:4}"; }
bad "unknown command" 2 "unknown command 'frob'" frob
bad "unknown flag" 2 "unknown option '--rmp'" tenant create x --rmp 5
bad "unknown global flag" 2 "unknown option" --verbose tenant list
bad "flag without value" 2 "needs a value" tenant create x --rpm
bad "flag given twice" 2 "given twice" tenant create x --rpm 1 --rpm 2
bad "negative limit" 2 "--rpm must be" tenant create x --rpm -5
bad "zero limit" 2 "--rpm must be" tenant create x --rpm 0
bad "absurd limit" 2 "--concurrency must be" tenant create x --concurrency 99999999999
bad "non-numeric limit" 2 "--tpm must be" tenant create x --tpm 1e6
bad "'none' on create" 2 "--rpm must be" tenant create x --rpm none
bad "control characters in a tenant name" 2 "tenant name may use only" tenant create $'evil\x1b[31m'
bad "newline in a tenant name" 2 "tenant name may use only" tenant create $'a\nb'
bad "over-long tenant name" 2 "1 to 64" tenant create "$(printf 'a%.0s' {1..65})"
bad "control characters in a key name" 2 "control character" key create --tenant acme --name $'a\x07b'
bad "invalid UTF-8 in a key name" 2 "invalid UTF-8" key create --tenant acme --name $'bad\xff'
bad "bad duration" 2 "bad --expires" key create --tenant acme --expires 30x
bad "bad date" 2 "bad --expires" key create --tenant acme --expires 2027-02-30
bad "expiry in the past" 2 "in the past" key create --tenant acme --expires 2001-01-01
bad "empty model in list" 2 "empty or over-long" key create --tenant acme --models a,,b
bad "bad grace" 2 "bad duration" key rotate "$ID" --grace forever
bad "malformed key id" 2 "not a key id" key show 'x;DROP TABLE api_keys'
bad "update with nothing to change" 2 "needs something to change" key update "$ID"
bad "key create without tenant" 2 "needs --tenant" key create
bad "usage --by nonsense" 2 "--by must be" usage --by week
bad "usage bad since" 2 "bad date" usage --since last-week
bad "tenant without subcommand" 2 "needs a subcommand" tenant
bad "extra positional" 2 "unexpected argument" tenant show acme beta
t_ok "no bad input changed the store" test "$(dump)" = "$before"

# ---- the store itself in trouble ----
t_expect "missing store" 3 "no key store at" ctl --db "$T_DIR/nope/x.db" tenant list
t_ok "a missing store is not created by a read" test ! -e "$T_DIR/nope"
cp "$DB" "$T_DIR/copy.db"
t_expect "missing pepper" 5 "cannot read pepper file" ctl --db "$T_DIR/copy.db" tenant list
t_expect "explicit pepper works" 0 "" ctl --db "$T_DIR/copy.db" --pepper "$T_DIR/var/ks.pepper" tenant list
MORGATE_PEPPER_FILE=$T_DIR/var/ks.pepper t_expect "pepper from the environment" 0 "" ctl --db "$T_DIR/copy.db" tenant list

# locked: another process holds the write lock
(echo "BEGIN EXCLUSIVE; SELECT 'locked';"; sleep 4; echo "COMMIT;") | sqlite3 "$DB" >"$T_DIR/locker.out" &
LOCKER=$!
T_PIDS+=($LOCKER)
for _ in $(seq 50); do grep -q locked "$T_DIR/locker.out" && break; sleep 0.05; done
t0=$(t_now_ms)
t_expect "locked store: clear error after the busy timeout" 5 "locked by another process" ctl --busy-timeout 300 tenant create waiting
t_ok "gave up after about the busy timeout" test $(($(t_now_ms) - t0)) -lt 3000
wait $LOCKER
t_expect "the lock gone, the same command works" 0 "" ctl tenant create waiting

# newer schema, hand edits, damage (on copies)
cp "$DB" "$T_DIR/newer.db"
sqlite3 "$T_DIR/newer.db" "PRAGMA user_version = 42"
t_expect "newer schema refused" 5 "newer than this binary" ctl --db "$T_DIR/newer.db" --pepper "$T_DIR/var/ks.pepper" tenant list
t_expect "init refuses a newer schema too" 5 "upgrade morgate" ctl --db "$T_DIR/newer.db" --pepper "$T_DIR/var/ks.pepper" init
cp "$DB" "$T_DIR/edited.db"
sqlite3 "$T_DIR/edited.db" "DROP TRIGGER keys_gen_upd"
t_expect "hand-dropped trigger detected" 5 "keys_gen_upd" ctl --db "$T_DIR/edited.db" --pepper "$T_DIR/var/ks.pepper" key list
cp "$DB" "$T_DIR/edited2.db"
sqlite3 "$T_DIR/edited2.db" "UPDATE ks_schema_migrations SET sha256 = 'feed' WHERE version = 1"
t_expect "edited migration detected" 5 "edited after it was applied" ctl --db "$T_DIR/edited2.db" --pepper "$T_DIR/var/ks.pepper" key list
head -c 3000 "$DB" >"$T_DIR/trunc.db"
t_expect "truncated store" 5 "damaged" ctl --db "$T_DIR/trunc.db" --pepper "$T_DIR/var/ks.pepper" key list
head -c 20000 /dev/urandom >"$T_DIR/noise.db"
t_expect "random bytes" 5 "damaged" ctl --db "$T_DIR/noise.db" --pepper "$T_DIR/var/ks.pepper" key list

# read-only: as root, drop to nobody with a store nobody can read but not write
RO=$T_DIR/ro
mkdir -p "$RO"
cp "$DB" "$RO/ks.db"
cp "$T_DIR/var/ks.pepper" "$RO/ks.pepper"
chmod 755 "$T_DIR" "$RO"
chmod 644 "$RO/ks.db"
if [[ $(id -u) -eq 0 ]]; then
  chown 65534 "$RO/ks.pepper"
  as_other() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
else
  chmod 555 "$RO"
  chmod 444 "$RO/ks.db"
  as_other() { "$@"; }
fi
before_ro=$(sha256sum "$RO/ks.db")
t_expect "read-only store: writes refused clearly" 5 "read-only" as_other "$CTL" --db "$RO/ks.db" tenant create rw
t_ok "read-only store unchanged" test "$(sha256sum "$RO/ks.db")" = "$before_ro"

# migrations from an empty file: dry run, then apply, then init records the pepper
EMPTY=$T_DIR/empty.db
: >"$EMPTY"
t_expect "migrate --dry-run lists pending" 0 "" ctl --db "$EMPTY" migrate --dry-run
t_ok "dry run names the migration" grep -q "would apply 0001_keystore" <<<"$T_OUT"
t_ok "dry run applied nothing" test "$(sqlite3 "$EMPTY" 'PRAGMA user_version')" = 0
t_expect "a pending schema is refused by other commands" 5 "run 'morgatectl migrate'" ctl --db "$EMPTY" tenant list
t_expect "migrate applies" 0 "" ctl --db "$EMPTY" --json migrate
t_ok "migrate json lists what it applied" test "$(json 'o.applied.map(m=>m.version).join()' <<<"$T_OUT")" = "$ALL_VERSIONS"
t_expect "init then completes the store" 0 "" ctl --db "$EMPTY" init
t_expect "and it works" 0 "" ctl --db "$EMPTY" tenant create fresh

# ---- concurrent writers and a live reader ----
KEYFILE=$T_DIR/key2
echo "$KEY2" >"$KEYFILE"
# the reader runs until it sees the revocation (or 60 s), however slow the writers are
t_bg watch "$WATCH" "$DB" "$KEYFILE" 60
WATCHER=$T_LAST_PID
for _ in $(seq 100); do grep -q ' ok' "$T_DIR/watch.out" 2>/dev/null && break; sleep 0.05; done
n_before=$(ctl --json key list | json o.length)
writers=()
for w in 1 2 3 4; do
  (for i in $(seq 25); do "$CTL" key create --tenant beta --name "w$w-$i" >/dev/null || exit 1; done) &
  writers+=($!)
done
wfail=0
for p in "${writers[@]}"; do wait "$p" || wfail=$((wfail + 1)); done
t_ok "4 concurrent writers x 25 keys all succeed" test "$wfail" = 0
t_ok "100 keys landed" test "$(ctl --json key list | json o.length)" = $((n_before + 100))
t_ok "names are all distinct" test "$(ctl --json key list --tenant beta | json 'new Set(o.map(k=>k.name)).size')" = 100

# revocation seen by the running reader within 1 s
t_run ctl key revoke "${KEY2:7:12}"
revoked_at=$(t_now_ms)
for _ in $(seq 60); do grep -q 'revoked' "$T_DIR/watch.out" && break; sleep 0.05; done
seen_at=$(awk '$2=="revoked"{print $1; exit}' "$T_DIR/watch.out")
if [[ -n $seen_at ]] && ((seen_at - revoked_at < 1000)); then
  t_pass "reader process saw the revocation after $((seen_at - revoked_at)) ms"
else
  t_fail "reader process saw the revocation within 1 s" "$(cat "$T_DIR/watch.out")"
fi
wait "$WATCHER"
t_ok "the reader hit no store errors during the writes" grep -q 'errors 0$' "$T_DIR/watch.out"

t_done
