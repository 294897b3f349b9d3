/*
 * keystore: tenants and API keys in SQLite, and the verify path the gateway calls per request.
 *
 * A key looks like  sk-mor-<id>_<secret><check>  (69 characters):
 *   "sk-mor-"  fixed prefix, so secret scanners and people recognise a morgate key;
 *   <id>       12 base62 characters, public: the key's id in the store, in logs and in the CLI;
 *   "_"        separator (double-click selects the whole key, unlike "-");
 *   <secret>   43 base62 characters: 32 bytes (256 bits) from libsodium's CSPRNG;
 *   <check>    6 base62 characters: CRC-32 of everything before it, so a mistyped or truncated
 *              key is rejected without touching the database or any cache.
 * Only HMAC-SHA-256(pepper, secret) is stored. The pepper is 32 random bytes in a 0600 file kept
 * outside the database, so a stolen database alone cannot test candidate keys.
 *
 * Thread-safety: a struct ks_store may be shared by any number of threads; every function taking
 * one is thread-safe. Admin functions (tenant/key mutations) are serialised internally.
 *
 * Errors: every function returns KS_OK (0) or a negative KS_E* code; ks_strerror() names it.
 * Admin functions also fill an optional struct ks_err with a one-line, lowercase message that
 * names the subject ("tenant 'acme' not found"); it never contains a secret.
 */
#ifndef KS_H
#define KS_H

#include <stddef.h>
#include <stdint.h>

enum ks_error {
	KS_OK = 0,
	KS_ENOMEM = -1,
	KS_EINVAL = -2,         /* bad argument: name, limit, duration, model list... */
	KS_ENOTFOUND = -3,      /* no such tenant or key */
	KS_ECONFLICT = -4,      /* the name exists already, or the state forbids the change */
	KS_ESTORE = -5,         /* SQLite failed (I/O, full disk, ...) */
	KS_EBUSY = -6,          /* the database stayed locked past the busy timeout */
	KS_ENOSTORE = -7,       /* no database at that path (run `morgatectl init`) */
	KS_ESCHEMA_NEWER = -8,  /* the database was migrated by a newer morgate */
	KS_ESCHEMA_OLDER = -9,  /* migrations are pending (run `morgatectl migrate`) */
	KS_ECORRUPT = -10,      /* not a database, truncated, or edited by hand */
	KS_EPEPPER = -11,       /* pepper file missing, unreadable, malformed or not this store's */
	KS_EREADONLY = -12,     /* the database or its directory cannot be written */
	/* verify verdicts */
	KS_EMALFORMED = -20,    /* not a well-formed morgate key (prefix, length, charset, check) */
	KS_EUNKNOWN = -21,      /* well-formed, but no key with this id and secret */
	KS_EREVOKED = -22,      /* the key was revoked, or its rotated-out secret's grace ended */
	KS_EEXPIRED = -23,      /* past the key's expiry time */
	KS_ETENANT_DISABLED = -24
};

#define KS_KEY_PREFIX "sk-mor-"
#define KS_KEY_LEN 69
#define KS_KEY_ID_LEN 12
#define KS_NAME_MAX 64      /* tenant names: [A-Za-z0-9._-], starting with a letter or digit */
#define KS_LABEL_MAX 100    /* key labels: printable UTF-8, no control characters */
#define KS_REASON_MAX 200
#define KS_MODELS_MAX 1024  /* a key's allow-list, comma-separated */
#define KS_MODEL_MAX 200    /* one model name */

/* Upper bounds a limit may take; larger values are refused as typos. */
#define KS_MAX_RPM 100000000LL
#define KS_MAX_TPM 100000000000LL
#define KS_MAX_CONCURRENCY 1000000LL
#define KS_MAX_MONTHLY_TOKENS 1000000000000000LL

struct ks_err {
	char msg[256];
};

/* Name of a KS_E* code; never NULL. */
const char *ks_strerror(int rc);

/* --- opening a store ---------------------------------------------------------------------- */

enum ks_open_flags {
	KS_OPEN_CREATE = 1 << 0,  /* create the database and the pepper file when missing */
	KS_OPEN_MIGRATE = 1 << 1, /* apply pending migrations (else pending ones: KS_ESCHEMA_OLDER) */
	KS_OPEN_NO_MIGRATE_CHECK = 1 << 2, /* open an older schema without migrating (migrate) */
	KS_OPEN_NO_LAST_USED = 1 << 3      /* verify does not record last-used times (admin tools) */
};

struct ks_options {
	const char *db_path;     /* required */
	const char *pepper_path; /* NULL: db_path with its extension replaced by ".pepper" */
	unsigned flags;          /* enum ks_open_flags */
	int busy_timeout_ms;     /* wait for a lock this long; 0: 5000 */
	unsigned cache_entries;  /* verify cache capacity; 0: 65536 */
	unsigned poll_ms;        /* how often verify looks for admin changes; 0: 200 */
	unsigned readers;        /* SQLite connections for cache misses; 0: 4 */
};

struct ks_store;

/*
 * Open (and with flags, create and migrate) a store. On success *out owns the store: release it
 * with ks_close(). The schema is checked: a version newer than this binary knows is refused
 * (KS_ESCHEMA_NEWER), an applied migration whose text differs from the embedded one is refused
 * (KS_ECORRUPT), and the pepper must match the fingerprint recorded at init (KS_EPEPPER).
 */
int ks_open(const struct ks_options *opt, struct ks_store **out, struct ks_err *err);

/* Flush pending usage and last-used times, then close. NULL is a no-op. */
void ks_close(struct ks_store *ks);

/* Schema versions: applied in the database, and the newest this binary embeds. */
int ks_schema_version(struct ks_store *ks, int *applied, int *latest);

/* Apply pending migrations, each in its own transaction. With dry_run, only report them.
 * cb (optional) is called once per pending migration, in order. */
int ks_migrate(struct ks_store *ks, int dry_run, void (*cb)(void *ctx, int version, const char *name),
	       void *ctx, struct ks_err *err);

/* Full integrity check: SQLite's integrity_check and foreign_key_check, and the schema. */
int ks_check(struct ks_store *ks, struct ks_err *err);

/* --- tenants -------------------------------------------------------------------------------- */

/* A limit of 0 means "none". */
struct ks_limits {
	int64_t rpm;            /* requests per minute */
	int64_t tpm;            /* tokens per minute */
	int64_t concurrency;    /* requests in flight */
	int64_t monthly_tokens; /* tenant only: tokens per calendar month (UTC) */
};

/* Which fields an update changes: the others are kept. Setting a field to 0 clears it. */
enum ks_limit_mask {
	KS_LIM_RPM = 1 << 0,
	KS_LIM_TPM = 1 << 1,
	KS_LIM_CONCURRENCY = 1 << 2,
	KS_LIM_MONTHLY = 1 << 3
};

struct ks_tenant {
	int64_t id;
	char name[KS_NAME_MAX + 1];
	int disabled;
	struct ks_limits limits;
	int64_t created_at, updated_at; /* unix seconds */
	int64_t keys_active;            /* filled by get/list: active keys of the tenant */
};

/* Validation used by the CLI and the store alike; KS_OK or KS_EINVAL with a message. */
int ks_validate_tenant_name(const char *name, struct ks_err *err);
int ks_validate_label(const char *label, struct ks_err *err);
int ks_validate_limits(const struct ks_limits *l, unsigned mask, struct ks_err *err);

int ks_tenant_create(struct ks_store *ks, const char *name, const struct ks_limits *limits,
		     struct ks_tenant *out, struct ks_err *err);
int ks_tenant_get(struct ks_store *ks, const char *name, struct ks_tenant *out, struct ks_err *err);
/* Calls cb for each tenant by name; a non-zero return from cb stops the walk and is returned. */
int ks_tenant_list(struct ks_store *ks, int (*cb)(void *ctx, const struct ks_tenant *t), void *ctx,
		   struct ks_err *err);
int ks_tenant_update(struct ks_store *ks, const char *name, const struct ks_limits *limits,
		     unsigned mask, struct ks_err *err);
int ks_tenant_set_disabled(struct ks_store *ks, const char *name, int disabled, struct ks_err *err);

/* --- keys ----------------------------------------------------------------------------------- */

enum ks_key_status { KS_KEY_ACTIVE, KS_KEY_REVOKED, KS_KEY_EXPIRED };
const char *ks_key_status_name(enum ks_key_status s);

struct ks_key {
	char id[KS_KEY_ID_LEN + 1];
	int64_t tenant_id;
	char tenant[KS_NAME_MAX + 1];
	char name[KS_LABEL_MAX + 1];  /* "" when none */
	enum ks_key_status status;    /* EXPIRED also when still 'active' but past expires_at */
	char hint[5];                 /* last 4 characters of the key, to tell keys apart */
	char models[KS_MODELS_MAX + 1]; /* comma-separated allow-list; "" = every model */
	struct ks_limits limits;      /* the key's own overrides (monthly_tokens unused) */
	int64_t created_at, updated_at, expires_at, revoked_at, rotated_at, prev_valid_until,
		last_used_at;         /* unix seconds; 0 = never / none */
	char revoke_reason[KS_REASON_MAX + 1];
};

struct ks_key_spec {
	const char *tenant;      /* create: required */
	const char *name;        /* optional label */
	int64_t expires_at;      /* unix seconds; 0 = never */
	const char *models;      /* comma-separated allow-list; NULL or "" = every model */
	struct ks_limits limits; /* overrides of the tenant's rpm/tpm/concurrency; 0 = inherit */
};

enum ks_key_mask {
	KS_KEY_SET_NAME = 1 << 8,
	KS_KEY_SET_EXPIRES = 1 << 9,
	KS_KEY_SET_MODELS = 1 << 10
	/* plus KS_LIM_RPM, KS_LIM_TPM, KS_LIM_CONCURRENCY for the limits */
};

/*
 * Create a key. key_out receives the full key (KS_KEY_LEN chars + NUL): the only time the secret
 * exists outside the caller's memory is now; the caller shows it once and wipes it. out
 * (optional) receives the stored record.
 */
int ks_key_create(struct ks_store *ks, const struct ks_key_spec *spec,
		  char key_out[KS_KEY_LEN + 1], struct ks_key *out, struct ks_err *err);
int ks_key_get(struct ks_store *ks, const char *id, struct ks_key *out, struct ks_err *err);
/* Keys of one tenant (or all when tenant is NULL), newest first; cb as for ks_tenant_list. */
int ks_key_list(struct ks_store *ks, const char *tenant, int (*cb)(void *ctx, const struct ks_key *k),
		void *ctx, struct ks_err *err);
/* Change the fields named in mask (enum ks_key_mask | enum ks_limit_mask). */
int ks_key_update(struct ks_store *ks, const char *id, const struct ks_key_spec *spec, unsigned mask,
		  struct ks_err *err);
/* Revoke now; reason optional. Revoking a revoked key is KS_ECONFLICT. */
int ks_key_revoke(struct ks_store *ks, const char *id, const char *reason, struct ks_err *err);
/*
 * Issue a new secret for the same id. The previous secret stays valid for grace_secs (0: it
 * stops at once), after which it is rejected as revoked. key_out as for ks_key_create.
 */
int ks_key_rotate(struct ks_store *ks, const char *id, int64_t grace_secs,
		  char key_out[KS_KEY_LEN + 1], struct ks_err *err);

/* --- the verify path ------------------------------------------------------------------------ */

/* What the gateway needs to admit a request. Plain data: the caller owns its copy. */
struct ks_key_info {
	char key_id[KS_KEY_ID_LEN + 1];
	int64_t tenant_id;
	char tenant[KS_NAME_MAX + 1];
	struct ks_limits limits;        /* per key: the key's override, else the tenant's value */
	struct ks_limits tenant_limits; /* per tenant, shared by all its keys */
	int64_t expires_at;             /* 0 = never */
	uint16_t models_len;            /* 0 = every model allowed */
	char models[KS_MODELS_MAX + 1]; /* comma-separated */
};

/*
 * Pure format check: KS_OK for a well-formed key (prefix, length, alphabet, checksum), else
 * KS_EMALFORMED. No store, no allocation, constant work: junk floods cost nanoseconds.
 */
int ks_key_check_format(const char *key, size_t len);

/*
 * Verify a presented key. KS_OK fills *info (optional). Otherwise the verdict: KS_EMALFORMED,
 * KS_EUNKNOWN (no such id, or the secret does not match: the two are indistinguishable to the
 * caller on purpose), KS_EREVOKED, KS_EEXPIRED, KS_ETENANT_DISABLED, or a store error.
 * Revoked/expired/disabled are reported only to a caller who holds the right secret.
 *
 * Cost: a cache hit is one HMAC-SHA-256 and a hash lookup, with no I/O and no allocation; a
 * miss is one indexed SQLite read. Admin changes from any process are seen within poll_ms
 * (ks_options): verify checks the store's change counter at most once per poll_ms.
 * Thread-safe; never writes to the database (last-used times are batched, see ks_flush).
 */
int ks_key_verify(struct ks_store *ks, const char *key, size_t len, struct ks_key_info *info);

/* Whether the info's allow-list admits model (exact match). */
int ks_info_allows_model(const struct ks_key_info *info, const char *model, size_t len);

/* --- usage ---------------------------------------------------------------------------------- */

/*
 * Count one request of key_id for model (today, UTC) in memory. Thread-safe, no I/O: rows reach
 * the database at the next ks_flush(). model is truncated to KS_MODEL_MAX bytes.
 */
int ks_usage_record(struct ks_store *ks, const char *key_id, const char *model, int64_t prompt_tokens,
		    int64_t completion_tokens);

/* Write pending usage and last-used times in one transaction. The gateway calls it every few
 * seconds and at shutdown; nothing is lost if the write fails (it is retried next time). */
int ks_flush(struct ks_store *ks, struct ks_err *err);

struct ks_usage_filter {
	const char *tenant; /* optional */
	const char *key_id; /* optional */
	const char *since;  /* optional, YYYY-MM-DD inclusive */
	int by_model;       /* group by model (summed over days), else by day (summed over models) */
};
struct ks_usage_row {
	char group[KS_MODEL_MAX + 1]; /* the day or the model */
	int64_t requests, prompt_tokens, completion_tokens;
};
int ks_usage_query(struct ks_store *ks, const struct ks_usage_filter *f,
		   int (*cb)(void *ctx, const struct ks_usage_row *r), void *ctx, struct ks_err *err);

/* --- marketplace sessions (the gateway's record of its on-chain sessions) ------------------- */

/*
 * One row per session the gateway opened or found on chain, keyed by local_id (the session id
 * is unknown until openSession is mined). Hex fields are lowercase "0x..." text, "" when unknown;
 * amounts are decimal wei text. Written by the gateway on every state change, read by
 * `morgatectl sessions`.
 */
struct ks_session {
	int64_t local_id;
	char id[67];           /* session id, "" while opening */
	char model[129];
	char model_id[67];
	char bid_id[67];
	char provider[43];
	char endpoint[257];
	char provider_key[133]; /* 0x04..., "" when unknown */
	char stake[80];
	char price[80];         /* wei per second */
	int64_t opened_at, ends_at, closed_at; /* unix seconds, 0 unknown */
	char state[16];         /* opening, open, retired, closing, closed, failed */
	int dispute;
	int64_t requests, failures;
	char open_tx[67], close_tx[67];
	int64_t updated_at;     /* unix ms */
};

/*
 * Insert or replace the row for s->local_id (one statement, one transaction). A row of another
 * local id with the same session id is replaced too: one row per session. Every field is checked
 * first (KS_EINVAL, the message names the field): local_id non-zero; hex fields "0x" and exactly
 * their digits (64; provider 40; provider_key 130, starting 0x04) or "", either case, stored
 * lowercase; model 1..128 bytes and endpoint 0..256 bytes, NUL-terminated in their arrays, without
 * C0 controls or DEL (other bytes are kept: chain strings may be cut mid-UTF-8); stake and price
 * "" or 1..78 decimal digits; state one of the six names; times and counters >= 0; updated_at
 * 0 means now. Never bumps the verify cache's change counter (no key verdict depends on it).
 */
int ks_session_put(struct ks_store *ks, const struct ks_session *s, struct ks_err *err);
/* By session id ("0x...", a unique prefix of at least 6 hex digits is enough, either case) or
 * local id (decimal: the uint64 the pool draws, or the same bits as a negative int64).
 * KS_ENOTFOUND, KS_ECONFLICT for an ambiguous prefix, KS_EINVAL for anything else. */
int ks_session_get(struct ks_store *ks, const char *id, struct ks_session *out, struct ks_err *err);
/* All rows, newest first (by opened_at; a row still opening by updated_at); state NULL = every
 * state, else only that one (an unknown state is KS_EINVAL). cb as for ks_tenant_list, called
 * with the store's admin lock held: it must not call back into the store. */
int ks_session_list(struct ks_store *ks, const char *state,
		    int (*cb)(void *ctx, const struct ks_session *s), void *ctx, struct ks_err *err);

/* --- parsing helpers shared with the CLI (pure) ----------------------------------------------- */

/* "30d", "24h", "90m", "45s", "2w" → seconds (1 s .. 100 years). */
int ks_parse_duration(const char *s, int64_t *secs, struct ks_err *err);
/* "2027-01-31" (00:00:00 UTC that day) or "2027-01-31T12:00:00Z" → unix seconds. */
int ks_parse_date(const char *s, int64_t *unix_secs, struct ks_err *err);
/* Format unix seconds as "2027-01-31T12:00:00Z" (0 → "-"). */
void ks_format_time(int64_t t, char buf[32]);

#endif
