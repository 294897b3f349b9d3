/*
 * The gateway's record of its marketplace sessions (migration 0002): one row per session,
 * written by the session pool on every state change (router-core rc_pool.h, "restart safety")
 * and read by `morgatectl sessions`.
 *
 * These writes go straight to the admin connection under admin_mu, without the admin
 * transaction helpers of ks_store.c: those drop this process's verify cache after each commit,
 * and a session row never changes a key verdict. For the same reason the table has no
 * generation trigger, so other gateways' caches are left alone too.
 *
 * Every field is validated before it reaches SQL (the CHECK constraints repeat the essentials),
 * so a bad record is refused with a message naming the field rather than a constraint failure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ks_internal.h"

#define SESSION_COLS                                                                             \
	"local_id, id, model, model_id, bid_id, provider, endpoint, provider_key, stake, price,"  \
	" opened_at, ends_at, closed_at, state, dispute, requests, failures, open_tx, close_tx,"  \
	" updated_at"

#define MIN_PREFIX_DIGITS 6

static const char *const states[] = {"opening", "open", "retired", "closing", "closed", "failed"};

static int valid_state(const char *s)
{
	for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
		if (strcmp(s, states[i]) == 0)
			return 1;
	return 0;
}

static int is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Length of a field that must fit its array with its NUL; -1 when it does not. */
static long field_len(const char *f, size_t cap)
{
	size_t n = strnlen(f, cap);
	return n == cap ? -1 : (long)n;
}

/*
 * A "0x"-prefixed hex field of exactly digits hex digits, or "" when may_be_empty. The value is
 * copied lowercased into out (cap >= digits + 3), the store's canonical form.
 */
static int check_hex(const char *name, const char *f, size_t cap, size_t digits, int may_be_empty,
		     char *out, struct ks_err *err)
{
	long n = field_len(f, cap);
	if (n < 0) {
		ks_set_err(err, "session field '%s' is not terminated within %zu bytes", name, cap);
		return KS_EINVAL;
	}
	if (n == 0 && may_be_empty) {
		out[0] = '\0';
		return KS_OK;
	}
	int ok = (size_t)n == digits + 2 && f[0] == '0' && (f[1] == 'x' || f[1] == 'X');
	for (long i = 2; ok && i < n; i++)
		ok = is_hex(f[i]);
	if (!ok) {
		ks_set_err(err, "session field '%s' must be 0x and %zu hex digits%s (got %ld bytes)",
			   name, digits, may_be_empty ? ", or empty" : "", n);
		return KS_EINVAL;
	}
	out[0] = '0';
	out[1] = 'x';
	for (long i = 2; i < n; i++)
		out[i] = (f[i] >= 'A' && f[i] <= 'F') ? (char)(f[i] - 'A' + 'a') : f[i];
	out[n] = '\0';
	return KS_OK;
}

/* Decimal wei: 1 to 78 digits (2^256 has 78), or "". */
static int check_amount(const char *name, const char *f, size_t cap, struct ks_err *err)
{
	long n = field_len(f, cap);
	int ok = n >= 0 && n <= 78;
	for (long i = 0; ok && i < n; i++)
		ok = f[i] >= '0' && f[i] <= '9';
	if (!ok) {
		ks_set_err(err, "session field '%s' must be a decimal amount in wei (at most 78 digits)",
			   name);
		return KS_EINVAL;
	}
	return KS_OK;
}

/* No C0 controls or DEL: these strings come from the chain (a provider chooses its endpoint, anyone
 * a model name) and are shown in terminals. Bytes >= 0x80 are kept as they are: router-core cuts
 * long chain strings at a byte count, possibly inside a UTF-8 sequence, and the pool must still be
 * able to record the session; `morgatectl sessions` sanitizes what it prints. */
static int check_text(const char *name, const char *f, size_t cap, int may_be_empty,
		      struct ks_err *err)
{
	long n = field_len(f, cap);
	if (n < 0 || (n == 0 && !may_be_empty)) {
		ks_set_err(err, "session field '%s' must be %d to %zu characters", name,
			   may_be_empty ? 0 : 1, cap - 1);
		return KS_EINVAL;
	}
	for (long i = 0; i < n; i++) {
		unsigned char c = (unsigned char)f[i];
		if (c < 0x20 || c == 0x7f) {
			ks_set_err(err, "session field '%s' has a control byte 0x%02x at %ld",
				   name, c, i);
			return KS_EINVAL;
		}
	}
	return KS_OK;
}

/* The canonical (lowercased) copies of the hex fields, bound by put. */
struct canon {
	char id[67], model_id[67], bid_id[67], provider[43], provider_key[133], open_tx[67],
		close_tx[67];
};

static int validate(const struct ks_session *s, struct canon *c, struct ks_err *err)
{
	int rc;
	if (s->local_id == 0) {
		ks_set_err(err, "session local id must not be 0");
		return KS_EINVAL;
	}
	if ((rc = check_hex("id", s->id, sizeof s->id, 64, 1, c->id, err)) != KS_OK ||
	    (rc = check_text("model", s->model, sizeof s->model, 0, err)) != KS_OK ||
	    (rc = check_hex("model_id", s->model_id, sizeof s->model_id, 64, 1, c->model_id, err)) !=
		    KS_OK ||
	    (rc = check_hex("bid_id", s->bid_id, sizeof s->bid_id, 64, 1, c->bid_id, err)) != KS_OK ||
	    (rc = check_hex("provider", s->provider, sizeof s->provider, 40, 1, c->provider, err)) !=
		    KS_OK ||
	    (rc = check_text("endpoint", s->endpoint, sizeof s->endpoint, 1, err)) != KS_OK ||
	    (rc = check_hex("provider_key", s->provider_key, sizeof s->provider_key, 130, 1,
			    c->provider_key, err)) != KS_OK ||
	    (rc = check_amount("stake", s->stake, sizeof s->stake, err)) != KS_OK ||
	    (rc = check_amount("price", s->price, sizeof s->price, err)) != KS_OK ||
	    (rc = check_hex("open_tx", s->open_tx, sizeof s->open_tx, 64, 1, c->open_tx, err)) !=
		    KS_OK ||
	    (rc = check_hex("close_tx", s->close_tx, sizeof s->close_tx, 64, 1, c->close_tx, err)) !=
		    KS_OK)
		return rc;
	/* An uncompressed secp256k1 public key (the provider's, from the handshake). */
	if (c->provider_key[0] && strncmp(c->provider_key, "0x04", 4) != 0) {
		ks_set_err(err, "session field 'provider_key' must be an uncompressed public key (0x04...)");
		return KS_EINVAL;
	}
	if (field_len(s->state, sizeof s->state) < 0 || !valid_state(s->state)) {
		ks_set_err(err, "session state must be one of opening, open, retired, closing, "
			   "closed, failed");
		return KS_EINVAL;
	}
	if (s->opened_at < 0 || s->ends_at < 0 || s->closed_at < 0 || s->requests < 0 ||
	    s->failures < 0 || s->updated_at < 0) {
		ks_set_err(err, "session times and counters must not be negative");
		return KS_EINVAL;
	}
	return KS_OK;
}

static void bind_opt(sqlite3_stmt *st, int i, const char *s)
{
	if (*s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ks_session_put(struct ks_store *ks, const struct ks_session *s, struct ks_err *err)
{
	struct canon c;
	int rc = validate(s, &c, err);
	if (rc != KS_OK)
		return rc;
	/* OR REPLACE: the row of this local id is replaced, and so is a row of another local id
	 * holding the same session id (found again after a restart): one row per session. */
	static const char sql[] = "INSERT OR REPLACE INTO sessions (" SESSION_COLS ")"
				  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
				  " ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";
	pthread_mutex_lock(&ks->admin_mu);
	sqlite3_stmt *st = NULL;
	int q = sqlite3_prepare_v2(ks->admin, sql, -1, &st, NULL);
	if (q == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, s->local_id);
		bind_opt(st, 2, c.id);
		sqlite3_bind_text(st, 3, s->model, -1, SQLITE_STATIC);
		bind_opt(st, 4, c.model_id);
		bind_opt(st, 5, c.bid_id);
		bind_opt(st, 6, c.provider);
		bind_opt(st, 7, s->endpoint);
		bind_opt(st, 8, c.provider_key);
		bind_opt(st, 9, s->stake);
		bind_opt(st, 10, s->price);
		sqlite3_bind_int64(st, 11, s->opened_at);
		sqlite3_bind_int64(st, 12, s->ends_at);
		sqlite3_bind_int64(st, 13, s->closed_at);
		sqlite3_bind_text(st, 14, s->state, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 15, s->dispute ? 1 : 0);
		sqlite3_bind_int64(st, 16, s->requests);
		sqlite3_bind_int64(st, 17, s->failures);
		bind_opt(st, 18, c.open_tx);
		bind_opt(st, 19, c.close_tx);
		sqlite3_bind_int64(st, 20, s->updated_at ? s->updated_at : now_ms());
		q = sqlite3_step(st);
		q = q == SQLITE_DONE ? SQLITE_OK : q;
	}
	if (q != SQLITE_OK)
		rc = ks_sqlite_error(ks, ks->admin, q, "save a session", err);
	sqlite3_finalize(st);
	pthread_mutex_unlock(&ks->admin_mu);
	return rc;
}

static void col_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);
	size_t n = s ? (size_t)sqlite3_column_bytes(st, col) : 0;
	if (n >= cap)
		n = cap - 1;
	if (n)
		memcpy(dst, s, n);
	dst[n] = '\0';
}

static void row_session(sqlite3_stmt *st, struct ks_session *s)
{
	memset(s, 0, sizeof *s);
	s->local_id = sqlite3_column_int64(st, 0);
	col_text(s->id, sizeof s->id, st, 1);
	col_text(s->model, sizeof s->model, st, 2);
	col_text(s->model_id, sizeof s->model_id, st, 3);
	col_text(s->bid_id, sizeof s->bid_id, st, 4);
	col_text(s->provider, sizeof s->provider, st, 5);
	col_text(s->endpoint, sizeof s->endpoint, st, 6);
	col_text(s->provider_key, sizeof s->provider_key, st, 7);
	col_text(s->stake, sizeof s->stake, st, 8);
	col_text(s->price, sizeof s->price, st, 9);
	s->opened_at = sqlite3_column_int64(st, 10);
	s->ends_at = sqlite3_column_int64(st, 11);
	s->closed_at = sqlite3_column_int64(st, 12);
	col_text(s->state, sizeof s->state, st, 13);
	s->dispute = sqlite3_column_int(st, 14);
	s->requests = sqlite3_column_int64(st, 15);
	s->failures = sqlite3_column_int64(st, 16);
	col_text(s->open_tx, sizeof s->open_tx, st, 17);
	col_text(s->close_tx, sizeof s->close_tx, st, 18);
	s->updated_at = sqlite3_column_int64(st, 19);
}

/*
 * What ks_session_get was asked for: a local id, a full session id, or a prefix of one. The hex
 * is lowercased into hex (NUL-terminated).
 */
enum lookup { BY_LOCAL, BY_ID, BY_PREFIX };

static int parse_lookup(const char *q, enum lookup *kind, int64_t *local, char hex[67],
			struct ks_err *err)
{
	size_t n = q ? strnlen(q, 80) : 0;
	if (n == 0 || n == 80) {
		ks_set_err(err, "a session is named by its id (0x and at least %d hex digits) or its "
			   "local id (decimal)", MIN_PREFIX_DIGITS);
		return KS_EINVAL;
	}
	if (q[0] == '0' && (q[1] == 'x' || q[1] == 'X')) {
		size_t digits = n - 2;
		for (size_t i = 2; i < n; i++)
			if (!is_hex(q[i])) {
				ks_set_err(err, "'%.*s' is not a session id: non-hex character at %zu",
					   (int)n, q, i);
				return KS_EINVAL;
			}
		if (digits < MIN_PREFIX_DIGITS || digits > 64) {
			ks_set_err(err, "'%.*s' is not a session id: give 0x and %d to 64 hex digits",
				   (int)n, q, MIN_PREFIX_DIGITS);
			return KS_EINVAL;
		}
		hex[0] = '0';
		hex[1] = 'x';
		for (size_t i = 2; i < n; i++)
			hex[i] = (q[i] >= 'A' && q[i] <= 'F') ? (char)(q[i] - 'A' + 'a') : q[i];
		hex[n] = '\0';
		*kind = digits == 64 ? BY_ID : BY_PREFIX;
		return KS_OK;
	}
	/* A local id: the pool draws it as a random non-zero uint64, stored as the int64 with the
	 * same bits; both spellings are accepted. */
	const char *p = q[0] == '-' ? q + 1 : q;
	int ok = *p != '\0';
	for (const char *c = p; ok && *c; c++)
		ok = *c >= '0' && *c <= '9';
	if (ok) {
		errno = 0;
		char *end;
		if (q[0] == '-') {
			long long v = strtoll(q, &end, 10);
			ok = errno == 0 && *end == '\0';
			*local = (int64_t)v;
		} else {
			unsigned long long v = strtoull(q, &end, 10);
			ok = errno == 0 && *end == '\0';
			*local = (int64_t)(uint64_t)v;
		}
	}
	if (!ok || *local == 0) {
		ks_set_err(err, "'%.*s' is not a session id (0x and at least %d hex digits) or a local "
			   "id (decimal)", (int)(n > 40 ? 40 : n), q, MIN_PREFIX_DIGITS);
		return KS_EINVAL;
	}
	*kind = BY_LOCAL;
	return KS_OK;
}

int ks_session_get(struct ks_store *ks, const char *id, struct ks_session *out, struct ks_err *err)
{
	enum lookup kind;
	int64_t local = 0;
	char hex[67];
	int rc = parse_lookup(id, &kind, &local, hex, err);
	if (rc != KS_OK)
		return rc;
	/* A prefix is matched with GLOB (hex digits only, so no wildcard can sneak in); LIMIT 2
	 * tells a unique match from an ambiguous one. */
	const char *sql = kind == BY_LOCAL ? "SELECT " SESSION_COLS " FROM sessions WHERE local_id = ?1"
			  : kind == BY_ID  ? "SELECT " SESSION_COLS " FROM sessions WHERE id = ?1"
					   : "SELECT " SESSION_COLS " FROM sessions WHERE id GLOB ?1"
					     " ORDER BY id LIMIT 2";
	char pattern[68];
	pthread_mutex_lock(&ks->admin_mu);
	sqlite3_stmt *st = NULL;
	int q = sqlite3_prepare_v2(ks->admin, sql, -1, &st, NULL);
	if (q != SQLITE_OK) {
		rc = ks_sqlite_error(ks, ks->admin, q, "read a session", err);
		goto out;
	}
	if (kind == BY_LOCAL) {
		sqlite3_bind_int64(st, 1, local);
	} else if (kind == BY_ID) {
		sqlite3_bind_text(st, 1, hex, -1, SQLITE_STATIC);
	} else {
		snprintf(pattern, sizeof pattern, "%s*", hex);
		sqlite3_bind_text(st, 1, pattern, -1, SQLITE_STATIC);
	}
	q = sqlite3_step(st);
	if (q == SQLITE_DONE) {
		ks_set_err(err, "session '%s' not found", kind == BY_LOCAL ? id : hex);
		rc = KS_ENOTFOUND;
		goto out;
	}
	if (q != SQLITE_ROW) {
		rc = ks_sqlite_error(ks, ks->admin, q, "read a session", err);
		goto out;
	}
	struct ks_session first;
	row_session(st, &first);
	if (kind == BY_PREFIX) {
		q = sqlite3_step(st);
		if (q == SQLITE_ROW) {
			ks_set_err(err, "session prefix '%s' matches several sessions: give more digits",
				   hex);
			rc = KS_ECONFLICT;
			goto out;
		}
		if (q != SQLITE_DONE) {
			rc = ks_sqlite_error(ks, ks->admin, q, "read a session", err);
			goto out;
		}
	}
	if (out)
		*out = first;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&ks->admin_mu);
	return rc;
}

int ks_session_list(struct ks_store *ks, const char *state,
		    int (*cb)(void *ctx, const struct ks_session *s), void *ctx, struct ks_err *err)
{
	if (state && !valid_state(state)) {
		ks_set_err(err, "unknown session state '%.*s' (opening, open, retired, closing, closed, "
			   "failed)", 20, state);
		return KS_EINVAL;
	}
	/* Newest first: by the time opened on chain; a session still opening (opened_at 0) by its
	 * last change, which is about when it began. */
	static const char sql[] =
		"SELECT " SESSION_COLS " FROM sessions WHERE ?1 IS NULL OR state = ?1"
		" ORDER BY CASE WHEN opened_at > 0 THEN opened_at ELSE updated_at / 1000 END DESC,"
		" updated_at DESC, local_id DESC";
	int rc = KS_OK;
	pthread_mutex_lock(&ks->admin_mu);
	sqlite3_stmt *st = NULL;
	int q = sqlite3_prepare_v2(ks->admin, sql, -1, &st, NULL);
	if (q == SQLITE_OK) {
		if (state)
			sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
		struct ks_session s;
		while ((q = sqlite3_step(st)) == SQLITE_ROW) {
			row_session(st, &s);
			if ((rc = cb(ctx, &s)) != 0)
				break;
		}
		if (rc == KS_OK && q != SQLITE_DONE)
			rc = ks_sqlite_error(ks, ks->admin, q, "list sessions", err);
	} else {
		rc = ks_sqlite_error(ks, ks->admin, q, "list sessions", err);
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&ks->admin_mu);
	return rc;
}
