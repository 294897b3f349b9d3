/*
 * keystore internals shared by ks_store.c (open, schema, admin), ks_verify.c (the cached verify
 * path), ks_usage.c (batched usage and last-used) and ks_keyfmt.c (the key format).
 */
#ifndef KS_INTERNAL_H
#define KS_INTERNAL_H

#include <openssl/sha.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>

#include <keystore/ks.h>

#define KS_SECRET_LEN 43 /* base62 of 32 bytes */
#define KS_CHECK_LEN 6   /* base62 of a CRC-32 */
#define KS_PEPPER_LEN 32

/* ---- key format (ks_keyfmt.c, pure) ---- */

/* The parts of a well-formed key, pointing into the presented string. */
struct ks_parsed_key {
	const char *id;     /* KS_KEY_ID_LEN chars */
	const char *secret; /* KS_SECRET_LEN chars */
};

int ks_key_parse(const char *key, size_t len, struct ks_parsed_key *out);
/* Fill key_out with a new key (random id and secret from libsodium) and its NUL. */
void ks_key_generate(char key_out[KS_KEY_LEN + 1]);
/* Replace the secret (and checksum) of an existing key string, keeping its id. */
void ks_key_regenerate_secret(char key[KS_KEY_LEN + 1]);

/*
 * HMAC-SHA-256 keyed by the pepper, with the inner and outer pad states computed once at open:
 * hashing a 43-byte secret then costs two SHA-256 compressions (OpenSSL's, with SHA-NI where the
 * CPU has it) and no allocation. The states are read-only after init, so threads share them.
 */
struct ks_hmac {
	SHA256_CTX inner, outer;
};
void ks_hmac_init(struct ks_hmac *h, const uint8_t pepper[KS_PEPPER_LEN]);
void ks_hmac(const struct ks_hmac *h, const void *msg, size_t len, uint8_t out[32]);
void ks_hmac_release(struct ks_hmac *h);

/* ---- the store ---- */

struct ks_conn {
	pthread_mutex_t mu;
	sqlite3 *db;
	sqlite3_stmt *lookup;     /* one key with its tenant, by id */
	sqlite3_stmt *generation; /* the change counter */
};

struct ks_centry; /* ks_verify.c */
struct ks_shard;

struct ks_usage_buf; /* ks_usage.c */

struct ks_store {
	char *db_path;
	int busy_timeout_ms;
	unsigned poll_ms;
	int track_last_used;
	struct ks_hmac hmac;

	pthread_mutex_t admin_mu; /* serialises admin statements on admin */
	sqlite3 *admin;

	unsigned nreaders;
	struct ks_conn *readers;
	atomic_uint next_reader;

	/* verify cache: see ks_verify.c for the epoch scheme */
	struct ks_shard *shards;
	unsigned shard_cap;
	atomic_uint_fast64_t epoch;
	atomic_int_fast64_t last_poll_ms;
	int64_t seen_generation; /* under poll_mu */
	pthread_mutex_t poll_mu;
	uint64_t hash_seed;
	atomic_uint_fast64_t *neg; /* neg_slots words: see ks_verify.c */
	unsigned neg_slots;

	struct ks_usage_buf *usage;
};

/* ks_parse.c */
int ks_validate_reason(const char *reason, struct ks_err *err);
int ks_validate_models(const char *models, struct ks_err *err);

/* ks_store.c */
int ks_sqlite_error(struct ks_store *ks, sqlite3 *db, int src, const char *what,
		    struct ks_err *err);
void ks_set_err(struct ks_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ks_begin(struct ks_store *ks, struct ks_err *err);
int ks_commit(struct ks_store *ks, struct ks_err *err);
void ks_rollback(struct ks_store *ks);
int64_t ks_now(void);

/* ks_verify.c */
int ks_cache_init(struct ks_store *ks, unsigned entries);
void ks_cache_release(struct ks_store *ks);
/* Walk cached entries whose last-used time advanced since the last walk. */
void ks_cache_take_last_used(struct ks_store *ks, void (*cb)(void *ctx, const char *id, int64_t t),
			     void *ctx);
/* Forget every cached verdict now (after this process's own admin writes). */
void ks_cache_invalidate(struct ks_store *ks);

/* ks_usage.c */
int ks_usage_init(struct ks_store *ks);
void ks_usage_release(struct ks_store *ks);
/* Remember that key id was used at t (from evicted cache entries). */
void ks_usage_note_last_used(struct ks_store *ks, const char *id, int64_t t);

#endif
