/*
 * The verify path: format check, peppered HMAC, an in-process cache, and SQLite on a miss.
 *
 * Cache validity is an epoch. Every entry records the epoch current when its row was *read*;
 * a lookup trusts only entries of the current epoch. The epoch advances when
 *   - this process changes the store (ks_cache_invalidate), or
 *   - the store's change counter (ks_meta 'generation', bumped by triggers on every
 *     verdict-changing write, from any process) differs from the last value seen.
 * Verify reads that counter at most once per poll_ms, on whichever thread first finds the last
 * poll too old (a trylock elects it; the others carry on with the cache). So a revocation by
 * `morgatectl` in another process is seen within poll_ms (200 ms by default), and an idle
 * gateway sees it on its very next request. Invalidation is O(1): stale entries are replaced
 * lazily when next looked up. Reading the epoch *before* the database means an entry read
 * across a change is born stale, never wrongly fresh.
 *
 * Unknown ids are remembered in a lock-free direct-mapped array of (fingerprint, epoch) words,
 * so a flood of well-formed but unknown keys costs one HMAC and one array probe each, writes
 * nothing, and cannot evict real entries.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "ks_internal.h"

#define NSHARDS 64 /* a power of two: h % NSHARDS is the low 6 bits */

struct ks_centry {
	struct ks_centry *next;
	uint64_t h;
	uint64_t epoch;
	char id[KS_KEY_ID_LEN + 1];
	int verdict; /* KS_OK, or a standing refusal: KS_EREVOKED, KS_EEXPIRED, KS_ETENANT_DISABLED */
	uint8_t hash[32];
	uint8_t prev_hash[32];
	int64_t prev_valid_until; /* 0: no previous secret */
	int64_t expires_at;
	atomic_int_fast64_t last_used;
	atomic_int_fast64_t last_flushed;
	int64_t tenant_id;
	char tenant[KS_NAME_MAX + 1];
	struct ks_limits limits, tenant_limits;
	uint16_t models_len;
	char models[]; /* models_len + 1 bytes */
};

/* Each shard on cache lines of its own: a reader's lock word must not share a line with a
 * neighbour's, or two cores verifying different keys would bounce it between them. */
struct ks_shard {
	_Alignas(64) pthread_rwlock_t lock;
	struct ks_centry **buckets;
	unsigned mask;
	unsigned count;
	unsigned evict_cursor;
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return ts.tv_sec;
}

/* ids are random, but attackers choose what they present: mix with a per-process seed. */
static uint64_t hash_id(const struct ks_store *ks, const char *id)
{
	uint64_t a, b = 0;
	memcpy(&a, id, 8);
	memcpy(&b, id + 8, 4);
	uint64_t h = ks->hash_seed ^ (a * 0x9E3779B97F4A7C15ull);
	h ^= (b + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull;
	h ^= h >> 31;
	h *= 0x94D049BB133111EBull;
	h ^= h >> 29;
	return h;
}

/* The low bits pick the shard (h % NSHARDS); the bucket must use other bits, or every entry of
 * a shard would crowd into 1/NSHARDS of its buckets. */
static unsigned bucket_of(const struct ks_shard *s, uint64_t h)
{
	return (unsigned)(h >> 6) & s->mask;
}

int ks_cache_init(struct ks_store *ks, unsigned entries)
{
	unsigned per = entries / NSHARDS + 1, nb = 16;
	while (nb < per)
		nb <<= 1;
	ks->shard_cap = per;
	randombytes_buf(&ks->hash_seed, sizeof ks->hash_seed);
	atomic_init(&ks->epoch, 1);
	atomic_init(&ks->last_poll_ms, INT64_MIN / 2);
	ks->shards = aligned_alloc(64, NSHARDS * sizeof *ks->shards);
	if (!ks->shards)
		return KS_ENOMEM;
	memset(ks->shards, 0, NSHARDS * sizeof *ks->shards);
	for (int i = 0; i < NSHARDS; i++) {
		pthread_rwlock_init(&ks->shards[i].lock, NULL);
		ks->shards[i].buckets = calloc(nb, sizeof(struct ks_centry *));
		if (!ks->shards[i].buckets)
			return KS_ENOMEM;
		ks->shards[i].mask = nb - 1;
	}
	ks->neg_slots = 4096;
	while (ks->neg_slots < entries)
		ks->neg_slots <<= 1;
	ks->neg = calloc(ks->neg_slots, sizeof(atomic_uint_fast64_t));
	return ks->neg ? KS_OK : KS_ENOMEM;
}

static void free_chain(struct ks_store *ks, struct ks_centry *e)
{
	while (e) {
		struct ks_centry *next = e->next;
		int64_t lu = atomic_load(&e->last_used);
		if (lu > atomic_load(&e->last_flushed))
			ks_usage_note_last_used(ks, e->id, lu);
		free(e);
		e = next;
	}
}

void ks_cache_release(struct ks_store *ks)
{
	if (ks->shards) {
		for (int i = 0; i < NSHARDS; i++) {
			struct ks_shard *s = &ks->shards[i];
			if (s->buckets)
				for (unsigned b = 0; b <= s->mask; b++)
					free_chain(ks, s->buckets[b]);
			free(s->buckets);
			pthread_rwlock_destroy(&s->lock);
		}
		free(ks->shards);
		ks->shards = NULL;
	}
	free(ks->neg);
	ks->neg = NULL;
}

void ks_cache_invalidate(struct ks_store *ks)
{
	if (ks->shards)
		atomic_fetch_add(&ks->epoch, 1);
}

void ks_cache_take_last_used(struct ks_store *ks, void (*cb)(void *ctx, const char *id, int64_t t),
			     void *ctx)
{
	for (int i = 0; i < NSHARDS; i++) {
		struct ks_shard *s = &ks->shards[i];
		pthread_rwlock_rdlock(&s->lock);
		for (unsigned b = 0; b <= s->mask; b++)
			for (struct ks_centry *e = s->buckets[b]; e; e = e->next) {
				int64_t lu = atomic_load(&e->last_used);
				if (lu > atomic_load(&e->last_flushed)) {
					atomic_store(&e->last_flushed, lu);
					cb(ctx, e->id, lu);
				}
			}
		pthread_rwlock_unlock(&s->lock);
	}
}

/* ---- negative cache: one 64-bit word per slot, 40 bits of fingerprint + 24 bits of epoch,
 * written and read whole so a racing pair of writers can never mix two ids' halves. ---- */

static uint64_t neg_word(uint64_t h, uint64_t epoch)
{
	return (h & ~0xFFFFFFull) | (epoch & 0xFFFFFF) | 1; /* never 0, the empty slot */
}

static int neg_hit(struct ks_store *ks, uint64_t h, uint64_t epoch)
{
	uint64_t w = atomic_load_explicit(&ks->neg[(h >> 7) & (ks->neg_slots - 1)],
					  memory_order_relaxed);
	return w == neg_word(h, epoch);
}

static void neg_put(struct ks_store *ks, uint64_t h, uint64_t epoch)
{
	atomic_store_explicit(&ks->neg[(h >> 7) & (ks->neg_slots - 1)], neg_word(h, epoch),
			      memory_order_relaxed);
}

/* ---- polling the change counter ---- */

static struct ks_conn *reader_lock(struct ks_store *ks)
{
	unsigned start = atomic_fetch_add_explicit(&ks->next_reader, 1, memory_order_relaxed);
	for (unsigned i = 0; i < ks->nreaders; i++) {
		struct ks_conn *c = &ks->readers[(start + i) % ks->nreaders];
		if (pthread_mutex_trylock(&c->mu) == 0)
			return c;
	}
	struct ks_conn *c = &ks->readers[start % ks->nreaders];
	pthread_mutex_lock(&c->mu);
	return c;
}

static void maybe_poll(struct ks_store *ks)
{
	int64_t now = mono_ms();
	if (now - atomic_load_explicit(&ks->last_poll_ms, memory_order_relaxed) < ks->poll_ms)
		return;
	if (pthread_mutex_trylock(&ks->poll_mu) != 0)
		return;
	if (now - atomic_load(&ks->last_poll_ms) >= ks->poll_ms) {
		struct ks_conn *c = reader_lock(ks);
		if (sqlite3_step(c->generation) == SQLITE_ROW) {
			int64_t g = sqlite3_column_int64(c->generation, 0);
			if (g != ks->seen_generation) {
				ks->seen_generation = g;
				atomic_fetch_add(&ks->epoch, 1);
			}
		}
		/* On a read error the cache keeps serving and the next poll retries. */
		sqlite3_reset(c->generation);
		pthread_mutex_unlock(&c->mu);
		atomic_store(&ks->last_poll_ms, now);
	}
	pthread_mutex_unlock(&ks->poll_mu);
}

/* ---- lookups ---- */

static int column_hash(sqlite3_stmt *st, int col, uint8_t out[32])
{
	if (sqlite3_column_type(st, col) != SQLITE_BLOB || sqlite3_column_bytes(st, col) != 32)
		return 0;
	memcpy(out, sqlite3_column_blob(st, col), 32);
	return 1;
}

/* Read one key row into a new entry. KS_EUNKNOWN when there is no such id. */
static int load(struct ks_store *ks, const char *id, uint64_t h, uint64_t epoch,
		struct ks_centry **out)
{
	struct ks_conn *c = reader_lock(ks);
	sqlite3_stmt *st = c->lookup;
	sqlite3_bind_text(st, 1, id, KS_KEY_ID_LEN, SQLITE_STATIC);
	int s = sqlite3_step(st), rc;
	struct ks_centry *e = NULL;
	if (s == SQLITE_DONE) {
		rc = KS_EUNKNOWN;
	} else if (s != SQLITE_ROW) {
		rc = ks_sqlite_error(ks, c->db, s, "look up a key", NULL);
	} else {
		int models_len = sqlite3_column_bytes(st, 5);
		if (models_len > KS_MODELS_MAX)
			models_len = KS_MODELS_MAX; /* the schema's CHECK forbids it; stay safe */
		e = calloc(1, sizeof *e + (size_t)models_len + 1);
		rc = e ? KS_OK : KS_ENOMEM;
		if (e) {
			const char *status = (const char *)sqlite3_column_text(st, 0);
			const char *tstatus = (const char *)sqlite3_column_text(st, 12);
			e->h = h;
			e->epoch = epoch;
			memcpy(e->id, id, KS_KEY_ID_LEN);
			if (!column_hash(st, 1, e->hash)) {
				rc = KS_ECORRUPT; /* unreachable under the schema's CHECKs */
			} else if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
				if (column_hash(st, 2, e->prev_hash))
					e->prev_valid_until = sqlite3_column_int64(st, 3);
			}
			e->verdict = !status || strcmp(status, "revoked") == 0 ? KS_EREVOKED
				     : strcmp(status, "expired") == 0        ? KS_EEXPIRED
				     : !tstatus || strcmp(tstatus, "active") != 0
					     ? KS_ETENANT_DISABLED
					     : KS_OK;
			e->expires_at = sqlite3_column_int64(st, 4);
			e->models_len = (uint16_t)models_len;
			if (models_len)
				memcpy(e->models, sqlite3_column_text(st, 5), (size_t)models_len);
			e->tenant_id = sqlite3_column_int64(st, 10);
			const unsigned char *tn = sqlite3_column_text(st, 11);
			size_t tl = tn ? (size_t)sqlite3_column_bytes(st, 11) : 0;
			memcpy(e->tenant, tn ? (const char *)tn : "", tl > KS_NAME_MAX ? KS_NAME_MAX : tl);
			e->tenant_limits.rpm = sqlite3_column_int64(st, 13);
			e->tenant_limits.tpm = sqlite3_column_int64(st, 14);
			e->tenant_limits.concurrency = sqlite3_column_int64(st, 15);
			e->tenant_limits.monthly_tokens = sqlite3_column_int64(st, 16);
			/* A key's own limit overrides the tenant's per-key default. */
			int64_t krpm = sqlite3_column_int64(st, 6), ktpm = sqlite3_column_int64(st, 7),
				kconc = sqlite3_column_int64(st, 8);
			e->limits.rpm = krpm ? krpm : e->tenant_limits.rpm;
			e->limits.tpm = ktpm ? ktpm : e->tenant_limits.tpm;
			e->limits.concurrency = kconc ? kconc : e->tenant_limits.concurrency;
			e->limits.monthly_tokens = e->tenant_limits.monthly_tokens;
			int64_t lu = sqlite3_column_int64(st, 9);
			atomic_init(&e->last_used, lu);
			atomic_init(&e->last_flushed, lu);
			if (rc != KS_OK) {
				free(e);
				e = NULL;
			}
		}
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	pthread_mutex_unlock(&c->mu);
	*out = e;
	return rc;
}

static int judge(const struct ks_centry *e, const uint8_t mac[32], int64_t now)
{
	int cur = sodium_memcmp(mac, e->hash, 32) == 0;
	int prev = e->prev_valid_until && sodium_memcmp(mac, e->prev_hash, 32) == 0;
	if (!cur && !prev)
		return KS_EUNKNOWN;
	if (e->verdict == KS_EREVOKED || (!cur && now >= e->prev_valid_until))
		return KS_EREVOKED;
	if (e->verdict == KS_EEXPIRED || (e->expires_at && now >= e->expires_at))
		return KS_EEXPIRED;
	return e->verdict;
}

static void fill_info(const struct ks_centry *e, struct ks_key_info *info)
{
	memcpy(info->key_id, e->id, KS_KEY_ID_LEN + 1);
	info->tenant_id = e->tenant_id;
	memcpy(info->tenant, e->tenant, sizeof info->tenant);
	info->limits = e->limits;
	info->tenant_limits = e->tenant_limits;
	info->expires_at = e->expires_at;
	info->models_len = e->models_len;
	memcpy(info->models, e->models, (size_t)e->models_len + 1);
}

static void touch(struct ks_centry *e, int64_t now)
{
	/* At most one store a second per key: no cache line ping-pong on hot keys. */
	if (atomic_load_explicit(&e->last_used, memory_order_relaxed) < now)
		atomic_store_explicit(&e->last_used, now, memory_order_relaxed);
}

/* The verdict for a presented secret against an entry; on success the entry's data is copied
 * out and its last-used time noted. Runs under the shard lock (read side suffices). */
static int decide(struct ks_store *ks, struct ks_centry *e, const uint8_t mac[32], int64_t now,
		  struct ks_key_info *info)
{
	int rc = judge(e, mac, now);
	if (rc == KS_OK) {
		if (ks->track_last_used)
			touch(e, now);
		if (info)
			fill_info(e, info);
	}
	return rc;
}

/* Insert e (replacing any entry for the same id), evicting to stay under the shard's cap. */
static void insert(struct ks_store *ks, struct ks_shard *s, struct ks_centry *e)
{
	struct ks_centry **pp = &s->buckets[bucket_of(s, e->h)];
	for (struct ks_centry **q = pp; *q; q = &(*q)->next) {
		if ((*q)->h == e->h && memcmp((*q)->id, e->id, KS_KEY_ID_LEN) == 0) {
			struct ks_centry *old = *q;
			/* Carry the unflushed last-used time over to the new entry. */
			int64_t lu = atomic_load(&old->last_used);
			if (lu > atomic_load(&e->last_used))
				atomic_store(&e->last_used, lu);
			if (atomic_load(&old->last_flushed) > atomic_load(&e->last_flushed))
				atomic_store(&e->last_flushed, atomic_load(&old->last_flushed));
			e->next = old->next;
			*q = e;
			free(old);
			return;
		}
	}
	if (s->count >= ks->shard_cap) {
		/* Evict one whole bucket, walking round-robin: cheap and fair enough for a cache
		 * whose misses cost one indexed read. */
		for (unsigned n = 0; n <= s->mask && s->count >= ks->shard_cap; n++) {
			unsigned b = s->evict_cursor++ & s->mask;
			for (struct ks_centry *x = s->buckets[b]; x; x = x->next)
				s->count--;
			free_chain(ks, s->buckets[b]);
			s->buckets[b] = NULL;
		}
	}
	e->next = *pp;
	*pp = e;
	s->count++;
}

int ks_key_verify(struct ks_store *ks, const char *key, size_t len, struct ks_key_info *info)
{
	struct ks_parsed_key pk;
	if (ks_key_parse(key, len, &pk) != KS_OK)
		return KS_EMALFORMED;
	maybe_poll(ks);
	uint64_t epoch = atomic_load(&ks->epoch);
	uint8_t mac[32];
	ks_hmac(&ks->hmac, pk.secret, KS_SECRET_LEN, mac);
	uint64_t h = hash_id(ks, pk.id);
	struct ks_shard *s = &ks->shards[h % NSHARDS];
	int64_t now = wall_s();
	int rc = 1;

	pthread_rwlock_rdlock(&s->lock);
	for (struct ks_centry *e = s->buckets[bucket_of(s, h)]; e; e = e->next) {
		if (e->h == h && e->epoch == epoch && memcmp(e->id, pk.id, KS_KEY_ID_LEN) == 0) {
			rc = decide(ks, e, mac, now, info);
			break;
		}
	}
	pthread_rwlock_unlock(&s->lock);
	if (rc != 1)
		return rc;
	/* Only now the negative cache: a hit on a real key never pays for its cache line. */
	if (neg_hit(ks, h, epoch))
		return KS_EUNKNOWN;

	struct ks_centry *e = NULL;
	rc = load(ks, pk.id, h, epoch, &e);
	if (rc == KS_EUNKNOWN)
		neg_put(ks, h, epoch);
	if (rc != KS_OK)
		return rc;
	if (!e) /* load() returns an entry with KS_OK; say so to the optimiser, too */
		return KS_ESTORE;
	rc = decide(ks, e, mac, now, info);
	pthread_rwlock_wrlock(&s->lock);
	insert(ks, s, e);
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

int ks_info_allows_model(const struct ks_key_info *info, const char *model, size_t len)
{
	if (info->models_len == 0)
		return 1;
	const char *p = info->models, *end = info->models + info->models_len;
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		size_t n = comma ? (size_t)(comma - p) : (size_t)(end - p);
		if (n == len && memcmp(p, model, len) == 0)
			return 1;
		p += n + 1;
	}
	return 0;
}
