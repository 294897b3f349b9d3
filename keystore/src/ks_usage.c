/*
 * Usage records and last-used times, batched: the request path only adds to an in-memory table
 * under a short mutex; ks_flush() swaps the table out and writes it in one transaction. A failed
 * write puts everything back, so a locked or full disk delays usage but never loses it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ks_internal.h"

#define NBUCKETS 1024
#define MAX_PENDING 200000 /* rows; past this, records are refused rather than eat memory */

struct uent {
	struct uent *next;
	uint64_t h;
	char key_id[KS_KEY_ID_LEN + 1];
	char day[11];
	int64_t requests, prompt, completion;
	char model[]; /* NUL-terminated */
};

struct lu {
	char id[KS_KEY_ID_LEN + 1];
	int64_t t;
};

struct ks_usage_buf {
	pthread_mutex_t mu;
	struct uent *buckets[NBUCKETS];
	size_t n;
	struct lu *lu;
	size_t nlu, caplu;
	pthread_mutex_t flush_mu; /* one flush at a time */
};

int ks_usage_init(struct ks_store *ks)
{
	ks->usage = calloc(1, sizeof *ks->usage);
	if (!ks->usage)
		return KS_ENOMEM;
	pthread_mutex_init(&ks->usage->mu, NULL);
	pthread_mutex_init(&ks->usage->flush_mu, NULL);
	return KS_OK;
}

static void free_table(struct uent **buckets)
{
	for (int b = 0; b < NBUCKETS; b++)
		for (struct uent *e = buckets[b], *next; e; e = next) {
			next = e->next;
			free(e);
		}
}

void ks_usage_release(struct ks_store *ks)
{
	if (!ks->usage)
		return;
	free_table(ks->usage->buckets);
	free(ks->usage->lu);
	pthread_mutex_destroy(&ks->usage->mu);
	pthread_mutex_destroy(&ks->usage->flush_mu);
	free(ks->usage);
	ks->usage = NULL;
}

static uint64_t fnv(const char *a, size_t na, const char *b, size_t nb, const char *c, size_t nc)
{
	uint64_t h = 0xcbf29ce484222325ull;
	const char *parts[3] = {a, b, c};
	size_t lens[3] = {na, nb, nc};
	for (int p = 0; p < 3; p++)
		for (size_t i = 0; i < lens[p]; i++)
			h = (h ^ (unsigned char)parts[p][i]) * 0x100000001b3ull;
	return h;
}

static void today(char day[11])
{
	static _Thread_local int64_t cached_daynum = -1;
	static _Thread_local char cached[11];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	int64_t dn = ts.tv_sec / 86400;
	if (dn != cached_daynum) {
		time_t t = (time_t)ts.tv_sec;
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(cached, sizeof cached, "%Y-%m-%d", &tm);
		cached_daynum = dn;
	}
	memcpy(day, cached, 11);
}

/* Add to the table; the caller holds u->mu. */
static int add_locked(struct ks_usage_buf *u, const char *key_id, const char *day, const char *model,
		      size_t mlen, int64_t req, int64_t pt, int64_t ct)
{
	uint64_t h = fnv(key_id, KS_KEY_ID_LEN, day, 10, model, mlen);
	struct uent **pp = &u->buckets[h % NBUCKETS];
	for (struct uent *e = *pp; e; e = e->next)
		if (e->h == h && memcmp(e->key_id, key_id, KS_KEY_ID_LEN) == 0 &&
		    memcmp(e->day, day, 10) == 0 && strncmp(e->model, model, mlen) == 0 &&
		    e->model[mlen] == '\0') {
			e->requests += req;
			e->prompt += pt;
			e->completion += ct;
			return KS_OK;
		}
	if (u->n >= MAX_PENDING)
		return KS_ENOMEM;
	struct uent *e = malloc(sizeof *e + mlen + 1);
	if (!e)
		return KS_ENOMEM;
	e->h = h;
	memcpy(e->key_id, key_id, KS_KEY_ID_LEN);
	e->key_id[KS_KEY_ID_LEN] = '\0';
	memcpy(e->day, day, 11);
	memcpy(e->model, model, mlen);
	e->model[mlen] = '\0';
	e->requests = req;
	e->prompt = pt;
	e->completion = ct;
	e->next = *pp;
	*pp = e;
	u->n++;
	return KS_OK;
}

int ks_usage_record(struct ks_store *ks, const char *key_id, const char *model, int64_t prompt_tokens,
		    int64_t completion_tokens)
{
	if (!key_id || strlen(key_id) != KS_KEY_ID_LEN || !model || !*model || prompt_tokens < 0 ||
	    completion_tokens < 0)
		return KS_EINVAL;
	size_t mlen = strnlen(model, KS_MODEL_MAX);
	char day[11];
	today(day);
	pthread_mutex_lock(&ks->usage->mu);
	int rc = add_locked(ks->usage, key_id, day, model, mlen, 1, prompt_tokens, completion_tokens);
	pthread_mutex_unlock(&ks->usage->mu);
	return rc;
}

/* Append without looking for the id: the flush's UPDATE keeps the latest time whatever the
 * order, so duplicates are harmless, and a scan per note would make big flushes quadratic. */
static void lu_add_locked(struct ks_usage_buf *u, const char *id, int64_t t)
{
	if (u->nlu == u->caplu) {
		size_t cap = u->caplu ? u->caplu * 2 : 64;
		struct lu *n = cap > MAX_PENDING ? NULL : realloc(u->lu, cap * sizeof *n);
		if (!n)
			return; /* a last-used time is advisory: dropping one is acceptable */
		u->lu = n;
		u->caplu = cap;
	}
	memcpy(u->lu[u->nlu].id, id, KS_KEY_ID_LEN);
	u->lu[u->nlu].id[KS_KEY_ID_LEN] = '\0';
	u->lu[u->nlu++].t = t;
}

void ks_usage_note_last_used(struct ks_store *ks, const char *id, int64_t t)
{
	if (!ks->usage)
		return;
	pthread_mutex_lock(&ks->usage->mu);
	lu_add_locked(ks->usage, id, t);
	pthread_mutex_unlock(&ks->usage->mu);
}

static void note_cb(void *ctx, const char *id, int64_t t)
{
	ks_usage_note_last_used(ctx, id, t);
}

static int write_batch(struct ks_store *ks, struct uent **table, const struct lu *lu, size_t nlu,
		       struct ks_err *err)
{
	sqlite3_stmt *ins = NULL, *upd = NULL, *exp = NULL;
	int rc = ks_begin(ks, err), s = SQLITE_OK;
	if (rc != KS_OK)
		return rc;
	/* Rows of a key that no longer exists are dropped instead of failing the whole batch. */
	s = sqlite3_prepare_v2(
		ks->admin,
		"INSERT INTO usage_daily (key_id, day, model, requests, prompt_tokens,"
		" completion_tokens) SELECT ?1, ?2, ?3, ?4, ?5, ?6"
		" WHERE EXISTS (SELECT 1 FROM api_keys WHERE id = ?1)"
		" ON CONFLICT (key_id, day, model) DO UPDATE SET"
		" requests = requests + excluded.requests,"
		" prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
		" completion_tokens = completion_tokens + excluded.completion_tokens",
		-1, &ins, NULL);
	if (s == SQLITE_OK)
		s = sqlite3_prepare_v2(ks->admin,
				       "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1"
				       " AND (last_used_at IS NULL OR last_used_at < ?2)",
				       -1, &upd, NULL);
	/* Keys past their expiry get the status that says so (one generation bump per batch). */
	if (s == SQLITE_OK)
		s = sqlite3_prepare_v2(ks->admin,
				       "UPDATE api_keys SET status = 'expired', updated_at = ?1"
				       " WHERE status = 'active' AND expires_at <= ?1",
				       -1, &exp, NULL);
	for (int b = 0; s == SQLITE_OK && b < NBUCKETS; b++)
		for (struct uent *e = table[b]; s == SQLITE_OK && e; e = e->next) {
			sqlite3_reset(ins);
			sqlite3_bind_text(ins, 1, e->key_id, -1, SQLITE_STATIC);
			sqlite3_bind_text(ins, 2, e->day, -1, SQLITE_STATIC);
			sqlite3_bind_text(ins, 3, e->model, -1, SQLITE_STATIC);
			sqlite3_bind_int64(ins, 4, e->requests);
			sqlite3_bind_int64(ins, 5, e->prompt);
			sqlite3_bind_int64(ins, 6, e->completion);
			s = sqlite3_step(ins);
			s = s == SQLITE_DONE ? SQLITE_OK : s;
		}
	for (size_t i = 0; s == SQLITE_OK && i < nlu; i++) {
		sqlite3_reset(upd);
		sqlite3_bind_text(upd, 1, lu[i].id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(upd, 2, lu[i].t);
		s = sqlite3_step(upd);
		s = s == SQLITE_DONE ? SQLITE_OK : s;
	}
	if (s == SQLITE_OK) {
		sqlite3_bind_int64(exp, 1, ks_now());
		s = sqlite3_step(exp);
		s = s == SQLITE_DONE ? SQLITE_OK : s;
	}
	sqlite3_finalize(ins);
	sqlite3_finalize(upd);
	sqlite3_finalize(exp);
	if (s != SQLITE_OK) {
		ks_rollback(ks);
		return ks_sqlite_error(ks, ks->admin, s, "write usage", err);
	}
	return ks_commit(ks, err);
}

int ks_flush(struct ks_store *ks, struct ks_err *err)
{
	if (!ks->usage)
		return KS_OK;
	struct ks_usage_buf *u = ks->usage;
	pthread_mutex_lock(&u->flush_mu);
	ks_cache_take_last_used(ks, note_cb, ks);

	/* Take everything pending; requests keep recording into the emptied table meanwhile. */
	struct uent *table[NBUCKETS];
	pthread_mutex_lock(&u->mu);
	memcpy(table, u->buckets, sizeof table);
	memset(u->buckets, 0, sizeof u->buckets);
	u->n = 0;
	struct lu *lu = u->lu;
	size_t nlu = u->nlu;
	u->lu = NULL;
	u->nlu = u->caplu = 0;
	pthread_mutex_unlock(&u->mu);

	int pending = nlu > 0;
	for (int b = 0; !pending && b < NBUCKETS; b++)
		pending = table[b] != NULL;
	int rc = KS_OK;
	if (pending) { /* nothing to write: no transaction, so read-only stores stay untouched */
		pthread_mutex_lock(&ks->admin_mu);
		rc = write_batch(ks, table, lu, nlu, err);
		pthread_mutex_unlock(&ks->admin_mu);
	}

	if (rc != KS_OK) { /* put it all back for the next attempt */
		pthread_mutex_lock(&u->mu);
		for (int b = 0; b < NBUCKETS; b++)
			for (struct uent *e = table[b]; e; e = e->next)
				add_locked(u, e->key_id, e->day, e->model, strlen(e->model),
					   e->requests, e->prompt, e->completion);
		for (size_t i = 0; i < nlu; i++)
			lu_add_locked(u, lu[i].id, lu[i].t);
		pthread_mutex_unlock(&u->mu);
	}
	free_table(table);
	free(lu);
	pthread_mutex_unlock(&u->flush_mu);
	return rc;
}

int ks_usage_query(struct ks_store *ks, const struct ks_usage_filter *f,
		   int (*cb)(void *ctx, const struct ks_usage_row *r), void *ctx, struct ks_err *err)
{
	int64_t since_ts;
	int rc = KS_OK;
	if (f->tenant && (rc = ks_validate_tenant_name(f->tenant, err)) != KS_OK)
		return rc;
	if (f->since && (rc = ks_parse_date(f->since, &since_ts, err)) != KS_OK)
		return rc;
	if (f->key_id && (rc = ks_key_get(ks, f->key_id, NULL, err)) != KS_OK)
		return rc;
	if (f->tenant && (rc = ks_tenant_get(ks, f->tenant, NULL, err)) != KS_OK)
		return rc;
	char since[11] = "";
	if (f->since)
		memcpy(since, f->since, 10); /* a full timestamp counts from its day */
	const char *sql =
		f->by_model
			? "SELECT u.model, sum(u.requests), sum(u.prompt_tokens),"
			  " sum(u.completion_tokens) FROM usage_daily u"
			  " JOIN api_keys k ON k.id = u.key_id JOIN tenants t ON t.id = k.tenant_id"
			  " WHERE (?1 IS NULL OR t.name = ?1) AND (?2 IS NULL OR u.key_id = ?2)"
			  " AND (?3 IS NULL OR u.day >= ?3) GROUP BY u.model ORDER BY u.model"
			: "SELECT u.day, sum(u.requests), sum(u.prompt_tokens),"
			  " sum(u.completion_tokens) FROM usage_daily u"
			  " JOIN api_keys k ON k.id = u.key_id JOIN tenants t ON t.id = k.tenant_id"
			  " WHERE (?1 IS NULL OR t.name = ?1) AND (?2 IS NULL OR u.key_id = ?2)"
			  " AND (?3 IS NULL OR u.day >= ?3) GROUP BY u.day ORDER BY u.day";
	pthread_mutex_lock(&ks->admin_mu);
	sqlite3_stmt *st = NULL;
	int s = sqlite3_prepare_v2(ks->admin, sql, -1, &st, NULL);
	if (s == SQLITE_OK) {
		if (f->tenant)
			sqlite3_bind_text(st, 1, f->tenant, -1, SQLITE_STATIC);
		if (f->key_id)
			sqlite3_bind_text(st, 2, f->key_id, -1, SQLITE_STATIC);
		if (f->since)
			sqlite3_bind_text(st, 3, since, -1, SQLITE_STATIC);
		struct ks_usage_row r;
		while ((s = sqlite3_step(st)) == SQLITE_ROW) {
			memset(&r, 0, sizeof r);
			const unsigned char *g = sqlite3_column_text(st, 0);
			size_t gl = g ? (size_t)sqlite3_column_bytes(st, 0) : 0;
			memcpy(r.group, g ? (const char *)g : "", gl > KS_MODEL_MAX ? KS_MODEL_MAX : gl);
			r.requests = sqlite3_column_int64(st, 1);
			r.prompt_tokens = sqlite3_column_int64(st, 2);
			r.completion_tokens = sqlite3_column_int64(st, 3);
			if ((rc = cb(ctx, &r)) != 0)
				break;
		}
		if (rc == KS_OK && s != SQLITE_DONE)
			rc = ks_sqlite_error(ks, ks->admin, s, "read usage", err);
	} else {
		rc = ks_sqlite_error(ks, ks->admin, s, "read usage", err);
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&ks->admin_mu);
	return rc;
}
