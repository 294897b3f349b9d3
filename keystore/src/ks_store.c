/*
 * Opening a key store (database, pepper, schema checks, migrations) and the admin operations on
 * tenants and keys. Every mutation is one BEGIN IMMEDIATE transaction on the admin connection:
 * it either lands whole or not at all, and takes the write lock up front so a concurrent writer
 * waits out the busy timeout instead of failing half way.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "ks_internal.h"
#include "ks_migrations.h"

#define PEPPER_CHECK_MSG "morgate pepper check v1"

int64_t ks_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

/* Translate a SQLite failure once, here: the caller gets a KS_E* code and a message naming the
 * store; SQLite's own text is kept only where it helps the admin. */
static int sqlite_err(struct ks_store *ks, sqlite3 *db, int src, const char *what, struct ks_err *err)
{
	const char *path = ks ? ks->db_path : "?";
	switch (src & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		ks_set_err(err, "key store '%s' is locked by another process (gave up after %d ms)",
			   path, ks ? ks->busy_timeout_ms : 0);
		return KS_EBUSY;
	case SQLITE_READONLY:
		ks_set_err(err, "key store '%s' is read-only (check the permissions of the file "
			   "and of its directory)", path);
		return KS_EREADONLY;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		ks_set_err(err, "key store '%s' is damaged (%s): restore it from a backup", path,
			   sqlite3_errstr(src));
		return KS_ECORRUPT;
	case SQLITE_NOMEM:
		ks_set_err(err, "out of memory");
		return KS_ENOMEM;
	case SQLITE_FULL:
		ks_set_err(err, "cannot %s: the disk holding '%s' is full", what, path);
		return KS_ESTORE;
	default:
		ks_set_err(err, "cannot %s in key store '%s': %s", what, path,
			   db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
		return KS_ESTORE;
	}
}

int ks_sqlite_error(struct ks_store *ks, sqlite3 *db, int src, const char *what,
		    struct ks_err *err)
{
	return sqlite_err(ks, db, src, what, err);
}

static int exec(struct ks_store *ks, sqlite3 *db, const char *sql, const char *what,
		struct ks_err *err)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? KS_OK : sqlite_err(ks, db, rc, what, err);
}

static int prepare(struct ks_store *ks, const char *sql, sqlite3_stmt **st, struct ks_err *err)
{
	int rc = sqlite3_prepare_v2(ks->admin, sql, -1, st, NULL);
	return rc == SQLITE_OK ? KS_OK : sqlite_err(ks, ks->admin, rc, "prepare a statement", err);
}

int ks_begin(struct ks_store *ks, struct ks_err *err)
{
	return exec(ks, ks->admin, "BEGIN IMMEDIATE", "start a transaction", err);
}

int ks_commit(struct ks_store *ks, struct ks_err *err)
{
	int rc = exec(ks, ks->admin, "COMMIT", "commit", err);
	if (rc != KS_OK)
		ks_rollback(ks);
	return rc;
}

void ks_rollback(struct ks_store *ks)
{
	if (!sqlite3_get_autocommit(ks->admin))
		sqlite3_exec(ks->admin, "ROLLBACK", NULL, NULL, NULL);
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
	if (s && *s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static void bind_limit(sqlite3_stmt *st, int i, int64_t v)
{
	if (v > 0)
		sqlite3_bind_int64(st, i, v);
	else
		sqlite3_bind_null(st, i);
}

static void copy_col(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);
	size_t n = s ? (size_t)sqlite3_column_bytes(st, col) : 0;
	if (n >= cap)
		n = cap - 1;
	if (n)
		memcpy(dst, s, n);
	dst[n] = '\0';
}

/* Step a bound one-row lookup: KS_OK with st on its row (the caller reads the columns and
 * finalizes), KS_ENOTFOUND with "<kind> '<name>' not found" (no message when kind is NULL), or
 * the store's error. */
static int step_one(struct ks_store *ks, sqlite3_stmt *st, const char *kind, const char *name,
		    const char *what, struct ks_err *err)
{
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		return KS_OK;
	if (s == SQLITE_DONE) {
		if (kind)
			ks_set_err(err, "%s '%s' not found", kind, name);
		return KS_ENOTFOUND;
	}
	return sqlite_err(ks, ks->admin, s, what, err);
}

/* ---- pepper ---- */

static char *default_pepper_path(const char *db)
{
	const char *slash = strrchr(db, '/');
	const char *dot = strrchr(db, '.');
	size_t stem = (dot && (!slash || dot > slash + 1)) ? (size_t)(dot - db) : strlen(db);
	char *p = malloc(stem + sizeof ".pepper");
	if (p) {
		memcpy(p, db, stem);
		memcpy(p + stem, ".pepper", sizeof ".pepper");
	}
	return p;
}

static int read_pepper(const char *path, uint8_t pepper[KS_PEPPER_LEN], struct ks_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		ks_set_err(err, "cannot read pepper file '%s': %s (it is created by 'morgatectl init'; "
			   "point --pepper or MORGATE_PEPPER_FILE at it)", path, strerror(errno));
		return KS_EPEPPER;
	}
	struct stat st;
	char buf[2 * KS_PEPPER_LEN + 2];
	ssize_t n = -1;
	int rc = KS_EPEPPER;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		ks_set_err(err, "pepper file '%s' is not a regular file", path);
		goto out;
	}
	if (st.st_mode & 077) {
		ks_set_err(err, "pepper file '%s' is accessible by group or others: chmod 600 it", path);
		goto out;
	}
	n = read(fd, buf, sizeof buf);
	size_t len = n > 0 ? (size_t)n : 0;
	if (len && buf[len - 1] == '\n')
		len--;
	size_t bin_len = 0;
	if (len != 2 * KS_PEPPER_LEN ||
	    sodium_hex2bin(pepper, KS_PEPPER_LEN, buf, len, NULL, &bin_len, NULL) != 0 ||
	    bin_len != KS_PEPPER_LEN) {
		ks_set_err(err, "pepper file '%s' is malformed (expected %d hex characters)", path,
			   2 * KS_PEPPER_LEN);
		goto out;
	}
	rc = KS_OK;
out:
	sodium_memzero(buf, sizeof buf);
	close(fd);
	return rc;
}

static int create_pepper(const char *path, struct ks_err *err)
{
	uint8_t pepper[KS_PEPPER_LEN];
	char hex[2 * KS_PEPPER_LEN + 2];
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		ks_set_err(err, "cannot create pepper file '%s': %s", path, strerror(errno));
		return KS_EPEPPER;
	}
	randombytes_buf(pepper, sizeof pepper);
	sodium_bin2hex(hex, sizeof hex, pepper, sizeof pepper);
	hex[2 * KS_PEPPER_LEN] = '\n';
	int ok = write(fd, hex, 2 * KS_PEPPER_LEN + 1) == 2 * KS_PEPPER_LEN + 1 && fsync(fd) == 0;
	int saved = errno;
	close(fd);
	sodium_memzero(pepper, sizeof pepper);
	sodium_memzero(hex, sizeof hex);
	if (!ok) {
		unlink(path);
		ks_set_err(err, "cannot write pepper file '%s': %s", path, strerror(saved));
		return KS_EPEPPER;
	}
	return KS_OK;
}

/* A short fingerprint of the pepper stored in the database, so the wrong pepper file is a clear
 * error at open instead of every key silently failing to verify. */
static void pepper_fingerprint(const struct ks_hmac *h, char out[33])
{
	uint8_t mac[32];
	ks_hmac(h, PEPPER_CHECK_MSG, sizeof PEPPER_CHECK_MSG - 1, mac);
	sodium_bin2hex(out, 33, mac, 16);
}

static int meta_get(struct ks_store *ks, const char *k, char *out, size_t cap, struct ks_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = prepare(ks, "SELECT v FROM ks_meta WHERE k = ?", &st, err);
	if (rc != KS_OK)
		return rc;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	if ((rc = step_one(ks, st, NULL, k, "read settings", err)) == KS_OK)
		copy_col(out, cap, st, 0);
	sqlite3_finalize(st);
	return rc;
}

/* ---- schema ---- */

static void sha256_hex(const char *s, char out[65])
{
	uint8_t h[32];
	crypto_hash_sha256(h, (const uint8_t *)s, strlen(s));
	sodium_bin2hex(out, 65, h, sizeof h);
}

static int user_version(struct ks_store *ks, int *v, struct ks_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(ks->admin, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		*v = sqlite3_column_int(st, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? KS_OK : sqlite_err(ks, ks->admin, rc, "read the schema version", err);
}

static int latest_version(void)
{
	return ks_migrations_count ? ks_migrations[ks_migrations_count - 1].version : 0;
}

/* Every applied migration must be one this binary embeds, with the same text. */
static int check_applied(struct ks_store *ks, int applied, struct ks_err *err)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(ks->admin,
			       "SELECT version, sha256 FROM ks_schema_migrations ORDER BY version",
			       -1, &st, NULL) != SQLITE_OK) {
		ks_set_err(err, "key store '%s' has schema version %d but no migration history: it "
			   "was edited by hand or is not a morgate key store", ks->db_path, applied);
		return KS_ECORRUPT;
	}
	int expect = 1, rc = KS_OK, s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		int v = sqlite3_column_int(st, 0);
		const struct ks_migration *m = NULL;
		for (int i = 0; i < ks_migrations_count; i++)
			if (ks_migrations[i].version == v)
				m = &ks_migrations[i];
		if (v != expect || !m) {
			ks_set_err(err, "key store '%s' has an unexpected migration %04d in its history",
				   ks->db_path, v);
			rc = KS_ECORRUPT;
			goto out;
		}
		char want[65], have[65];
		sha256_hex(m->sql, want);
		copy_col(have, sizeof have, st, 1);
		if (strcmp(want, have) != 0) {
			ks_set_err(err, "migration %04d_%s in key store '%s' differs from the one this "
				   "binary ships (edited after it was applied)", v, m->name, ks->db_path);
			rc = KS_ECORRUPT;
			goto out;
		}
		expect++;
	}
	if (s != SQLITE_DONE) {
		rc = sqlite_err(ks, ks->admin, s, "read the migration history", err);
	} else if (expect - 1 != applied) {
		ks_set_err(err, "key store '%s' is at schema version %d but records %d migrations: it "
			   "was edited by hand", ks->db_path, applied, expect - 1);
		rc = KS_ECORRUPT;
	}
out:
	sqlite3_finalize(st);
	return rc;
}

/* The objects the code relies on; a hand-dropped one is reported by name rather than as an
 * obscure "no such table" later. */
static int check_objects(struct ks_store *ks, struct ks_err *err)
{
	static const char *const names[] = {
		"ks_meta", "tenants", "api_keys", "usage_daily", "tenants_gen_ins", "tenants_gen_upd",
		"tenants_gen_del", "keys_gen_ins", "keys_gen_upd", "keys_gen_del",
	};
	sqlite3_stmt *st = NULL;
	int rc = prepare(ks, "SELECT 1 FROM sqlite_master WHERE name = ?", &st, err);
	for (size_t i = 0; rc == KS_OK && i < sizeof names / sizeof names[0]; i++) {
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, names[i], -1, SQLITE_STATIC);
		int s = sqlite3_step(st);
		if (s == SQLITE_DONE) {
			ks_set_err(err, "key store '%s' lacks '%s': it was edited by hand",
				   ks->db_path, names[i]);
			rc = KS_ECORRUPT;
		} else if (s != SQLITE_ROW) {
			rc = sqlite_err(ks, ks->admin, s, "read the schema", err);
		}
	}
	sqlite3_finalize(st);
	return rc;
}

static int foreign_objects(struct ks_store *ks, int *n, struct ks_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = prepare(ks, "SELECT count(*) FROM sqlite_master", &st, err);
	if (rc != KS_OK)
		return rc;
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		*n = sqlite3_column_int(st, 0);
	else
		rc = sqlite_err(ks, ks->admin, s, "read the schema", err);
	sqlite3_finalize(st);
	return rc;
}

int ks_schema_version(struct ks_store *ks, int *applied, int *latest)
{
	*latest = latest_version();
	pthread_mutex_lock(&ks->admin_mu);
	int rc = user_version(ks, applied, NULL);
	pthread_mutex_unlock(&ks->admin_mu);
	return rc;
}

static int apply_migration(struct ks_store *ks, const struct ks_migration *m, struct ks_err *err)
{
	char sum[65], pragma[64];
	sha256_hex(m->sql, sum);
	int rc = ks_begin(ks, err);
	if (rc != KS_OK)
		return rc;
	rc = exec(ks, ks->admin,
		  "CREATE TABLE IF NOT EXISTS ks_schema_migrations ("
		  " version INTEGER PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL,"
		  " applied_at INTEGER NOT NULL) STRICT",
		  "record migrations", err);
	if (rc == KS_OK)
		rc = exec(ks, ks->admin, m->sql, "apply a migration", err);
	if (rc == KS_OK) {
		sqlite3_stmt *st = NULL;
		rc = prepare(ks, "INSERT INTO ks_schema_migrations VALUES (?, ?, ?, ?)", &st, err);
		if (rc == KS_OK) {
			sqlite3_bind_int(st, 1, m->version);
			sqlite3_bind_text(st, 2, m->name, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 3, sum, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 4, ks_now());
			int s = sqlite3_step(st);
			if (s != SQLITE_DONE)
				rc = sqlite_err(ks, ks->admin, s, "record a migration", err);
			sqlite3_finalize(st);
		}
	}
	if (rc == KS_OK) {
		snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", m->version);
		rc = exec(ks, ks->admin, pragma, "set the schema version", err);
	}
	if (rc != KS_OK) {
		ks_rollback(ks);
		char msg[sizeof err->msg];
		if (err) {
			memcpy(msg, err->msg, sizeof msg);
			ks_set_err(err, "migration %04d_%s failed and was rolled back: %s", m->version,
				   m->name, msg);
		}
		return rc;
	}
	return ks_commit(ks, err);
}

int ks_migrate(struct ks_store *ks, int dry_run, void (*cb)(void *ctx, int version, const char *name),
	       void *ctx, struct ks_err *err)
{
	pthread_mutex_lock(&ks->admin_mu);
	int applied = 0;
	int rc = user_version(ks, &applied, err);
	for (int i = 0; rc == KS_OK && i < ks_migrations_count; i++) {
		const struct ks_migration *m = &ks_migrations[i];
		if (m->version <= applied)
			continue;
		if (!dry_run)
			rc = apply_migration(ks, m, err);
		if (rc == KS_OK && cb)
			cb(ctx, m->version, m->name);
	}
	pthread_mutex_unlock(&ks->admin_mu);
	return rc;
}

int ks_check(struct ks_store *ks, struct ks_err *err)
{
	pthread_mutex_lock(&ks->admin_mu);
	sqlite3_stmt *st = NULL;
	int rc = prepare(ks, "PRAGMA integrity_check", &st, err);
	if (rc == KS_OK) {
		int s = sqlite3_step(st);
		if (s != SQLITE_ROW) {
			rc = sqlite_err(ks, ks->admin, s, "check integrity", err);
		} else if (strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
			ks_set_err(err, "key store '%s' is damaged: %s", ks->db_path,
				   (const char *)sqlite3_column_text(st, 0));
			rc = KS_ECORRUPT;
		}
		sqlite3_finalize(st);
		st = NULL;
	}
	if (rc == KS_OK && (rc = prepare(ks, "PRAGMA foreign_key_check", &st, err)) == KS_OK) {
		int s = sqlite3_step(st);
		if (s == SQLITE_ROW) {
			ks_set_err(err, "key store '%s' has rows in '%s' pointing at missing parents",
				   ks->db_path, (const char *)sqlite3_column_text(st, 0));
			rc = KS_ECORRUPT;
		} else if (s != SQLITE_DONE) {
			rc = sqlite_err(ks, ks->admin, s, "check foreign keys", err);
		}
		sqlite3_finalize(st);
	}
	if (rc == KS_OK) {
		int applied = 0;
		rc = user_version(ks, &applied, err);
		if (rc == KS_OK)
			rc = check_applied(ks, applied, err);
		if (rc == KS_OK)
			rc = check_objects(ks, err);
	}
	pthread_mutex_unlock(&ks->admin_mu);
	return rc;
}

/* ---- open / close ---- */

static int configure(struct ks_store *ks, sqlite3 *db, struct ks_err *err)
{
	sqlite3_busy_timeout(db, ks->busy_timeout_ms);
	sqlite3_extended_result_codes(db, 1);
	return exec(ks, db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL", "configure",
		    err);
}

static int open_readers(struct ks_store *ks, unsigned n, struct ks_err *err)
{
	ks->readers = calloc(n, sizeof *ks->readers);
	if (!ks->readers)
		return KS_ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		struct ks_conn *c = &ks->readers[i];
		pthread_mutex_init(&c->mu, NULL);
		ks->nreaders = i + 1;
		int s = sqlite3_open_v2(ks->db_path, &c->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
					NULL);
		if (s != SQLITE_OK)
			return sqlite_err(ks, c->db, s, "open a reader", err);
		int rc = configure(ks, c->db, err);
		if (rc != KS_OK)
			return rc;
		/* Misses read through a memory map, not read(2): with 100,000 keys the store is
		 * tens of MB and the default 2 MB page cache would make every miss a syscall. */
		sqlite3_exec(c->db, "PRAGMA mmap_size = 268435456", NULL, NULL, NULL);
		s = sqlite3_prepare_v3(
			c->db,
			"SELECT k.status, k.secret_hash, k.prev_secret_hash, k.prev_valid_until,"
			" k.expires_at, k.models, k.rpm, k.tpm, k.concurrency, k.last_used_at,"
			" t.id, t.name, t.status, t.rpm, t.tpm, t.concurrency, t.monthly_tokens"
			" FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = ?",
			-1, SQLITE_PREPARE_PERSISTENT, &c->lookup, NULL);
		if (s == SQLITE_OK)
			s = sqlite3_prepare_v3(c->db, "SELECT v FROM ks_meta WHERE k = 'generation'",
					       -1, SQLITE_PREPARE_PERSISTENT, &c->generation, NULL);
		if (s != SQLITE_OK)
			return sqlite_err(ks, c->db, s, "prepare the verify queries", err);
	}
	return KS_OK;
}

void ks_close(struct ks_store *ks)
{
	if (!ks)
		return;
	if (ks->admin && ks->readers)
		ks_flush(ks, NULL);
	ks_usage_release(ks);
	ks_cache_release(ks);
	for (unsigned i = 0; i < ks->nreaders; i++) {
		sqlite3_finalize(ks->readers[i].lookup);
		sqlite3_finalize(ks->readers[i].generation);
		sqlite3_close(ks->readers[i].db);
		pthread_mutex_destroy(&ks->readers[i].mu);
	}
	free(ks->readers);
	sqlite3_close(ks->admin);
	pthread_mutex_destroy(&ks->admin_mu);
	pthread_mutex_destroy(&ks->poll_mu);
	ks_hmac_release(&ks->hmac);
	free(ks->db_path);
	free(ks);
}

static int mkdir_parent(const char *path, struct ks_err *err)
{
	const char *slash = strrchr(path, '/');
	if (!slash || slash == path)
		return KS_OK;
	char dir[4096];
	size_t n = (size_t)(slash - path);
	if (n >= sizeof dir) {
		ks_set_err(err, "key store path is too long");
		return KS_EINVAL;
	}
	memcpy(dir, path, n);
	dir[n] = '\0';
	if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
		ks_set_err(err, "cannot create directory '%s': %s", dir, strerror(errno));
		return KS_ESTORE;
	}
	return KS_OK;
}

static int setup_pepper(struct ks_store *ks, const char *pepper_path, unsigned flags,
			struct ks_err *err)
{
	char have[65] = "", want[33];
	int rc = meta_get(ks, "pepper_check", have, sizeof have, err);
	if (rc != KS_OK && rc != KS_ENOTFOUND)
		return rc;
	int recorded = rc == KS_OK;
	if ((flags & KS_OPEN_CREATE) && !recorded && access(pepper_path, F_OK) != 0) {
		/* A new store: the pepper is born with it. A store that has a fingerprint never gets
		 * a new pepper: that would silently invalidate every key. */
		rc = create_pepper(pepper_path, err);
		if (rc != KS_OK)
			return rc;
	}
	uint8_t pepper[KS_PEPPER_LEN];
	rc = read_pepper(pepper_path, pepper, err);
	if (rc != KS_OK)
		return rc;
	ks_hmac_init(&ks->hmac, pepper);
	sodium_memzero(pepper, sizeof pepper);
	pepper_fingerprint(&ks->hmac, want);
	if (recorded) {
		if (strcmp(have, want) != 0) {
			ks_set_err(err, "pepper file '%s' does not belong to key store '%s'",
				   pepper_path, ks->db_path);
			return KS_EPEPPER;
		}
		return KS_OK;
	}
	if (!(flags & KS_OPEN_CREATE)) {
		ks_set_err(err, "key store '%s' has no pepper fingerprint: run 'morgatectl init'",
			   ks->db_path);
		return KS_EPEPPER;
	}
	sqlite3_stmt *st = NULL;
	rc = prepare(ks, "INSERT INTO ks_meta (k, v) VALUES ('pepper_check', ?)", &st, err);
	if (rc != KS_OK)
		return rc;
	sqlite3_bind_text(st, 1, want, -1, SQLITE_STATIC);
	int s = sqlite3_step(st);
	sqlite3_finalize(st);
	return s == SQLITE_DONE ? KS_OK : sqlite_err(ks, ks->admin, s, "record the pepper", err);
}

int ks_open(const struct ks_options *opt, struct ks_store **out, struct ks_err *err)
{
	*out = NULL;
	if (!opt || !opt->db_path || !*opt->db_path) {
		ks_set_err(err, "no key store path given");
		return KS_EINVAL;
	}
	if (sodium_init() < 0) {
		ks_set_err(err, "cannot initialise libsodium");
		return KS_ESTORE;
	}
	struct ks_store *ks = calloc(1, sizeof *ks);
	char *pepper_path = NULL;
	int rc = KS_ENOMEM;
	if (!ks)
		return rc;
	pthread_mutex_init(&ks->admin_mu, NULL);
	pthread_mutex_init(&ks->poll_mu, NULL);
	ks->busy_timeout_ms = opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : 5000;
	ks->poll_ms = opt->poll_ms ? opt->poll_ms : 200;
	ks->track_last_used = !(opt->flags & KS_OPEN_NO_LAST_USED);
	ks->db_path = strdup(opt->db_path);
	pepper_path = opt->pepper_path ? strdup(opt->pepper_path) : default_pepper_path(opt->db_path);
	if (!ks->db_path || !pepper_path)
		goto fail;

	struct stat st;
	if (stat(ks->db_path, &st) != 0) {
		if (!(opt->flags & KS_OPEN_CREATE)) {
			ks_set_err(err, "no key store at '%s' (run 'morgatectl init' first)", ks->db_path);
			rc = KS_ENOSTORE;
			goto fail;
		}
		if ((rc = mkdir_parent(ks->db_path, err)) != KS_OK)
			goto fail;
		/* Key digests are not secrets, but nobody else needs to read them: create the file
		 * 0600 ourselves (SQLite gives its -wal and -shm files the database's mode). */
		int fd = open(ks->db_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST) {
			ks_set_err(err, "cannot create key store '%s': %s", ks->db_path, strerror(errno));
			rc = errno == EACCES || errno == EROFS ? KS_EREADONLY : KS_ESTORE;
			goto fail;
		}
		if (fd >= 0)
			close(fd);
	} else if (!S_ISREG(st.st_mode)) {
		ks_set_err(err, "key store '%s' is not a regular file", ks->db_path);
		rc = KS_EINVAL;
		goto fail;
	}
	int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
		     ((opt->flags & KS_OPEN_CREATE) ? SQLITE_OPEN_CREATE : 0);
	int s = sqlite3_open_v2(ks->db_path, &ks->admin, oflags, NULL);
	if (s != SQLITE_OK) {
		rc = sqlite_err(ks, ks->admin, s, "open", err);
		goto fail;
	}
	if ((rc = configure(ks, ks->admin, err)) != KS_OK)
		goto fail;

	int applied = 0, objects = 0;
	if ((rc = user_version(ks, &applied, err)) != KS_OK ||
	    (rc = foreign_objects(ks, &objects, err)) != KS_OK)
		goto fail;
	if (applied == 0 && objects > 0) {
		ks_set_err(err, "'%s' is a SQLite database but not a morgate key store", ks->db_path);
		rc = KS_ECORRUPT;
		goto fail;
	}
	if (applied > latest_version()) {
		ks_set_err(err, "key store '%s' has schema version %d, newer than this binary knows "
			   "(%d): upgrade morgate", ks->db_path, applied, latest_version());
		rc = KS_ESCHEMA_NEWER;
		goto fail;
	}
	if (applied > 0 && (rc = check_applied(ks, applied, err)) != KS_OK)
		goto fail;
	/* WAL lets the gateway's readers and the CLI's writer work at once. Switching needs a write;
	 * on a read-only file the existing mode stays and writes fail later with KS_EREADONLY. */
	if (!sqlite3_db_readonly(ks->admin, "main") &&
	    (rc = exec(ks, ks->admin, "PRAGMA journal_mode = WAL", "enable WAL", err)) != KS_OK)
		goto fail;
	if (applied < latest_version()) {
		if (opt->flags & KS_OPEN_MIGRATE) {
			pthread_mutex_lock(&ks->admin_mu);
			for (int i = 0; rc == KS_OK && i < ks_migrations_count; i++)
				if (ks_migrations[i].version > applied)
					rc = apply_migration(ks, &ks_migrations[i], err);
			pthread_mutex_unlock(&ks->admin_mu);
			if (rc != KS_OK)
				goto fail;
			applied = latest_version();
		} else if (!(opt->flags & KS_OPEN_NO_MIGRATE_CHECK)) {
			ks_set_err(err, "key store '%s' is at schema version %d, this binary needs %d: "
				   "run 'morgatectl migrate'", ks->db_path, applied, latest_version());
			rc = KS_ESCHEMA_OLDER;
			goto fail;
		}
	}
	if (applied == latest_version()) {
		if ((rc = check_objects(ks, err)) != KS_OK ||
		    (rc = setup_pepper(ks, pepper_path, opt->flags, err)) != KS_OK ||
		    (rc = open_readers(ks, opt->readers ? opt->readers : 4, err)) != KS_OK ||
		    (rc = ks_cache_init(ks, opt->cache_entries ? opt->cache_entries : 65536)) != KS_OK ||
		    (rc = ks_usage_init(ks)) != KS_OK)
			goto fail;
	}
	free(pepper_path);
	*out = ks;
	return KS_OK;
fail:
	free(pepper_path);
	ks_close(ks);
	return rc;
}

/* ---- tenants ---- */

/*
 * After this process's own committed write (admin_mu held): forget cached verdicts now, and
 * record the change counter as seen, so the next poll does not flush the cache a second time
 * for the same change. A change by another process that landed in between is covered too: the
 * epoch advances after reading the counter, so nothing read before it stays trusted.
 */
static void own_write_done(struct ks_store *ks)
{
	if (!ks->shards)
		return;
	char g[32];
	pthread_mutex_lock(&ks->poll_mu);
	if (meta_get(ks, "generation", g, sizeof g, NULL) == KS_OK)
		ks->seen_generation = strtoll(g, NULL, 10);
	ks_cache_invalidate(ks);
	pthread_mutex_unlock(&ks->poll_mu);
}

#define TENANT_COLS                                                                               \
	"t.id, t.name, t.status, t.rpm, t.tpm, t.concurrency, t.monthly_tokens, t.created_at,"   \
	" t.updated_at, (SELECT count(*) FROM api_keys k WHERE k.tenant_id = t.id"               \
	" AND k.status = 'active' AND (k.expires_at IS NULL OR k.expires_at > ?1))"

static void row_tenant(sqlite3_stmt *st, struct ks_tenant *t)
{
	memset(t, 0, sizeof *t);
	t->id = sqlite3_column_int64(st, 0);
	copy_col(t->name, sizeof t->name, st, 1);
	t->disabled = strcmp((const char *)sqlite3_column_text(st, 2), "disabled") == 0;
	t->limits.rpm = sqlite3_column_int64(st, 3);
	t->limits.tpm = sqlite3_column_int64(st, 4);
	t->limits.concurrency = sqlite3_column_int64(st, 5);
	t->limits.monthly_tokens = sqlite3_column_int64(st, 6);
	t->created_at = sqlite3_column_int64(st, 7);
	t->updated_at = sqlite3_column_int64(st, 8);
	t->keys_active = sqlite3_column_int64(st, 9);
}

static int tenant_get_locked(struct ks_store *ks, const char *name, struct ks_tenant *out,
			     struct ks_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = prepare(ks, "SELECT " TENANT_COLS " FROM tenants t WHERE t.name = ?2", &st, err);
	if (rc != KS_OK)
		return rc;
	sqlite3_bind_int64(st, 1, ks_now());
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	if ((rc = step_one(ks, st, "tenant", name, "read a tenant", err)) == KS_OK && out)
		row_tenant(st, out);
	sqlite3_finalize(st);
	return rc;
}

/*
 * Admin writes: txn_begin() takes the admin lock and opens a BEGIN IMMEDIATE transaction (the
 * write lock up front, waiting out the busy timeout); txn_end() commits when rc is KS_OK and
 * rolls back otherwise, invalidates this process's cache after a commit, drops the lock and
 * returns the final code. Every mutation is one txn_begin ... txn_end pair, whatever happens
 * in between, so nothing is ever half-written.
 */
static int txn_begin(struct ks_store *ks, struct ks_err *err)
{
	pthread_mutex_lock(&ks->admin_mu);
	return ks_begin(ks, err);
}

static int txn_end(struct ks_store *ks, int rc, struct ks_err *err)
{
	if (rc == KS_OK)
		rc = ks_commit(ks, err);
	else
		ks_rollback(ks);
	if (rc == KS_OK)
		own_write_done(ks);
	pthread_mutex_unlock(&ks->admin_mu);
	return rc;
}

/* Just the id, by the unique index: the key-creation path must not count a tenant's keys. */
static int tenant_id_locked(struct ks_store *ks, const char *name, int64_t *id, struct ks_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = prepare(ks, "SELECT id FROM tenants WHERE name = ?", &st, err);
	if (rc != KS_OK)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if ((rc = step_one(ks, st, "tenant", name, "read a tenant", err)) == KS_OK)
		*id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc;
}

int ks_tenant_get(struct ks_store *ks, const char *name, struct ks_tenant *out, struct ks_err *err)
{
	int rc = ks_validate_tenant_name(name, err);
	if (rc != KS_OK)
		return rc;
	pthread_mutex_lock(&ks->admin_mu);
	rc = tenant_get_locked(ks, name, out, err);
	pthread_mutex_unlock(&ks->admin_mu);
	return rc;
}

int ks_tenant_list(struct ks_store *ks, int (*cb)(void *ctx, const struct ks_tenant *t), void *ctx,
		   struct ks_err *err)
{
	pthread_mutex_lock(&ks->admin_mu);
	sqlite3_stmt *st = NULL;
	int rc = prepare(ks, "SELECT " TENANT_COLS " FROM tenants t ORDER BY t.name", &st, err);
	if (rc == KS_OK) {
		sqlite3_bind_int64(st, 1, ks_now());
		int s;
		struct ks_tenant t;
		while ((s = sqlite3_step(st)) == SQLITE_ROW) {
			row_tenant(st, &t);
			if ((rc = cb(ctx, &t)) != 0)
				break;
		}
		if (rc == KS_OK && s != SQLITE_DONE)
			rc = sqlite_err(ks, ks->admin, s, "list tenants", err);
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&ks->admin_mu);
	return rc;
}

/* Run one prepared write inside its own transaction and check how many rows it touched. */
static int step_write(struct ks_store *ks, sqlite3_stmt *st, const char *what, int *changes,
		      struct ks_err *err)
{
	int s = sqlite3_step(st);
	if (s != SQLITE_DONE) {
		if ((s & 0xff) == SQLITE_CONSTRAINT) {
			ks_set_err(err, "cannot %s: %s", what, sqlite3_errmsg(ks->admin));
			return KS_ECONFLICT;
		}
		return sqlite_err(ks, ks->admin, s, what, err);
	}
	if (changes)
		*changes = sqlite3_changes(ks->admin);
	return KS_OK;
}

int ks_tenant_create(struct ks_store *ks, const char *name, const struct ks_limits *limits,
		     struct ks_tenant *out, struct ks_err *err)
{
	struct ks_limits none = {0};
	if (!limits)
		limits = &none;
	int rc = ks_validate_tenant_name(name, err);
	if (rc == KS_OK)
		rc = ks_validate_limits(limits, ~0u, err);
	if (rc != KS_OK)
		return rc;
	sqlite3_stmt *st = NULL;
	if ((rc = txn_begin(ks, err)) != KS_OK)
		goto out;
	int64_t existing;
	if (tenant_id_locked(ks, name, &existing, NULL) == KS_OK) {
		ks_set_err(err, "tenant '%s' already exists", name);
		rc = KS_ECONFLICT;
		goto out;
	}
	rc = prepare(ks,
		     "INSERT INTO tenants (name, rpm, tpm, concurrency, monthly_tokens, created_at,"
		     " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
		     &st, err);
	if (rc != KS_OK)
		goto out;
	int64_t now = ks_now();
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	bind_limit(st, 2, limits->rpm);
	bind_limit(st, 3, limits->tpm);
	bind_limit(st, 4, limits->concurrency);
	bind_limit(st, 5, limits->monthly_tokens);
	sqlite3_bind_int64(st, 6, now);
	sqlite3_bind_int64(st, 7, now);
	if ((rc = step_write(ks, st, "create the tenant", NULL, err)) != KS_OK)
		goto out;
	if (out && (rc = tenant_get_locked(ks, name, out, err)) != KS_OK)
		goto out;
out:
	sqlite3_finalize(st);
	return txn_end(ks, rc, err);
}

int ks_tenant_update(struct ks_store *ks, const char *name, const struct ks_limits *limits,
		     unsigned mask, struct ks_err *err)
{
	int rc = ks_validate_tenant_name(name, err);
	if (rc == KS_OK)
		rc = ks_validate_limits(limits, mask, err);
	if (rc != KS_OK)
		return rc;
	sqlite3_stmt *st = NULL;
	int changes = 0;
	if ((rc = txn_begin(ks, err)) != KS_OK)
		goto out;
	/* "keep" is expressed in SQL so one statement serves every combination of fields. */
	rc = prepare(ks,
		     "UPDATE tenants SET"
		     " rpm = CASE WHEN ?2 THEN ?3 ELSE rpm END,"
		     " tpm = CASE WHEN ?4 THEN ?5 ELSE tpm END,"
		     " concurrency = CASE WHEN ?6 THEN ?7 ELSE concurrency END,"
		     " monthly_tokens = CASE WHEN ?8 THEN ?9 ELSE monthly_tokens END,"
		     " updated_at = ?10 WHERE name = ?1",
		     &st, err);
	if (rc != KS_OK)
		goto out;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, !!(mask & KS_LIM_RPM));
	bind_limit(st, 3, limits->rpm);
	sqlite3_bind_int(st, 4, !!(mask & KS_LIM_TPM));
	bind_limit(st, 5, limits->tpm);
	sqlite3_bind_int(st, 6, !!(mask & KS_LIM_CONCURRENCY));
	bind_limit(st, 7, limits->concurrency);
	sqlite3_bind_int(st, 8, !!(mask & KS_LIM_MONTHLY));
	bind_limit(st, 9, limits->monthly_tokens);
	sqlite3_bind_int64(st, 10, ks_now());
	if ((rc = step_write(ks, st, "update the tenant", &changes, err)) != KS_OK)
		goto out;
	if (changes == 0) {
		ks_set_err(err, "tenant '%s' not found", name);
		rc = KS_ENOTFOUND;
		goto out;
	}
out:
	sqlite3_finalize(st);
	return txn_end(ks, rc, err);
}

int ks_tenant_set_disabled(struct ks_store *ks, const char *name, int disabled, struct ks_err *err)
{
	int rc = ks_validate_tenant_name(name, err);
	if (rc != KS_OK)
		return rc;
	sqlite3_stmt *st = NULL;
	int changes = 0;
	if ((rc = txn_begin(ks, err)) != KS_OK)
		goto out;
	rc = prepare(ks, "UPDATE tenants SET status = ?2, updated_at = ?3 WHERE name = ?1", &st, err);
	if (rc != KS_OK)
		goto out;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, disabled ? "disabled" : "active", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, ks_now());
	if ((rc = step_write(ks, st, "change the tenant", &changes, err)) != KS_OK)
		goto out;
	if (changes == 0) {
		ks_set_err(err, "tenant '%s' not found", name);
		rc = KS_ENOTFOUND;
		goto out;
	}
out:
	sqlite3_finalize(st);
	return txn_end(ks, rc, err);
}

/* ---- keys ---- */

#define KEY_COLS                                                                                 \
	"k.id, k.tenant_id, t.name, k.name, k.status, k.hint, k.models, k.rpm, k.tpm,"           \
	" k.concurrency, k.created_at, k.updated_at, k.expires_at, k.revoked_at, k.rotated_at,"  \
	" k.prev_valid_until, k.last_used_at, k.revoke_reason"                                    \
	" FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"

static void row_key(sqlite3_stmt *st, struct ks_key *k, int64_t now)
{
	memset(k, 0, sizeof *k);
	copy_col(k->id, sizeof k->id, st, 0);
	k->tenant_id = sqlite3_column_int64(st, 1);
	copy_col(k->tenant, sizeof k->tenant, st, 2);
	copy_col(k->name, sizeof k->name, st, 3);
	const char *status = (const char *)sqlite3_column_text(st, 4);
	k->status = strcmp(status, "revoked") == 0   ? KS_KEY_REVOKED
		    : strcmp(status, "expired") == 0 ? KS_KEY_EXPIRED
						     : KS_KEY_ACTIVE;
	copy_col(k->hint, sizeof k->hint, st, 5);
	copy_col(k->models, sizeof k->models, st, 6);
	k->limits.rpm = sqlite3_column_int64(st, 7);
	k->limits.tpm = sqlite3_column_int64(st, 8);
	k->limits.concurrency = sqlite3_column_int64(st, 9);
	k->created_at = sqlite3_column_int64(st, 10);
	k->updated_at = sqlite3_column_int64(st, 11);
	k->expires_at = sqlite3_column_int64(st, 12);
	k->revoked_at = sqlite3_column_int64(st, 13);
	k->rotated_at = sqlite3_column_int64(st, 14);
	k->prev_valid_until = sqlite3_column_int64(st, 15);
	k->last_used_at = sqlite3_column_int64(st, 16);
	copy_col(k->revoke_reason, sizeof k->revoke_reason, st, 17);
	if (k->status == KS_KEY_ACTIVE && k->expires_at && k->expires_at <= now)
		k->status = KS_KEY_EXPIRED;
}

static int validate_key_id(const char *id, struct ks_err *err)
{
	size_t n = id ? strlen(id) : 0;
	int ok = n == KS_KEY_ID_LEN;
	for (size_t i = 0; ok && i < n; i++)
		ok = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') ||
		     (id[i] >= 'A' && id[i] <= 'Z');
	if (!ok) {
		ks_set_err(err, "'%.*s' is not a key id (12 letters and digits, as 'key list' shows)",
			   (int)(n > 40 ? 40 : n), id ? id : "");
		return KS_EINVAL;
	}
	return KS_OK;
}

static int key_get_locked(struct ks_store *ks, const char *id, struct ks_key *out,
			  struct ks_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = prepare(ks, "SELECT " KEY_COLS " WHERE k.id = ?", &st, err);
	if (rc != KS_OK)
		return rc;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if ((rc = step_one(ks, st, "key", id, "read a key", err)) == KS_OK && out)
		row_key(st, out, ks_now());
	sqlite3_finalize(st);
	return rc;
}

int ks_key_get(struct ks_store *ks, const char *id, struct ks_key *out, struct ks_err *err)
{
	int rc = validate_key_id(id, err);
	if (rc != KS_OK)
		return rc;
	pthread_mutex_lock(&ks->admin_mu);
	rc = key_get_locked(ks, id, out, err);
	pthread_mutex_unlock(&ks->admin_mu);
	return rc;
}

int ks_key_list(struct ks_store *ks, const char *tenant, int (*cb)(void *ctx, const struct ks_key *k),
		void *ctx, struct ks_err *err)
{
	int rc = KS_OK;
	pthread_mutex_lock(&ks->admin_mu);
	int64_t tid;
	if (tenant && (rc = tenant_id_locked(ks, tenant, &tid, err)) != KS_OK)
		goto out;
	sqlite3_stmt *st = NULL;
	rc = prepare(ks,
		     "SELECT " KEY_COLS " WHERE ?1 IS NULL OR t.name = ?1"
		     " ORDER BY k.created_at DESC, k.rowid DESC",
		     &st, err);
	if (rc == KS_OK) {
		bind_text_or_null(st, 1, tenant);
		int s;
		struct ks_key k;
		int64_t now = ks_now();
		while ((s = sqlite3_step(st)) == SQLITE_ROW) {
			row_key(st, &k, now);
			if ((rc = cb(ctx, &k)) != 0)
				break;
		}
		if (rc == KS_OK && s != SQLITE_DONE)
			rc = sqlite_err(ks, ks->admin, s, "list keys", err);
		sqlite3_finalize(st);
	}
out:
	pthread_mutex_unlock(&ks->admin_mu);
	return rc;
}

static int validate_spec(const struct ks_key_spec *spec, unsigned mask, struct ks_err *err)
{
	int rc = KS_OK;
	if ((mask & KS_KEY_SET_NAME) && spec->name && *spec->name)
		rc = ks_validate_label(spec->name, err);
	if (rc == KS_OK && (mask & KS_KEY_SET_MODELS) && spec->models && *spec->models)
		rc = ks_validate_models(spec->models, err);
	if (rc == KS_OK)
		rc = ks_validate_limits(&spec->limits, mask & (KS_LIM_RPM | KS_LIM_TPM |
							       KS_LIM_CONCURRENCY), err);
	if (rc == KS_OK && (mask & KS_LIM_MONTHLY)) {
		ks_set_err(err, "monthly token quotas are set on the tenant, not on a key");
		rc = KS_EINVAL;
	}
	if (rc == KS_OK && (mask & KS_KEY_SET_EXPIRES) && spec->expires_at &&
	    spec->expires_at <= ks_now()) {
		ks_set_err(err, "expiry time is in the past");
		rc = KS_EINVAL;
	}
	return rc;
}

int ks_key_create(struct ks_store *ks, const struct ks_key_spec *spec,
		  char key_out[KS_KEY_LEN + 1], struct ks_key *out, struct ks_err *err)
{
	const unsigned all = KS_KEY_SET_NAME | KS_KEY_SET_EXPIRES | KS_KEY_SET_MODELS | KS_LIM_RPM |
			     KS_LIM_TPM | KS_LIM_CONCURRENCY;
	int rc = ks_validate_tenant_name(spec->tenant, err);
	if (rc == KS_OK)
		rc = validate_spec(spec, all, err);
	if (rc != KS_OK)
		return rc;
	sqlite3_stmt *st = NULL;
	int64_t tenant_id = 0;
	uint8_t hash[32];
	if ((rc = txn_begin(ks, err)) != KS_OK)
		goto out;
	if ((rc = tenant_id_locked(ks, spec->tenant, &tenant_id, err)) != KS_OK)
		goto out;
	rc = prepare(ks,
		     "INSERT INTO api_keys (id, tenant_id, name, secret_hash, hint, models, rpm, tpm,"
		     " concurrency, created_at, updated_at, expires_at)"
		     " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		     &st, err);
	if (rc != KS_OK)
		goto out;
	/* 71 random bits of id make a collision astronomically rare; a few retries make it moot. */
	for (int attempt = 0;; attempt++) {
		ks_key_generate(key_out);
		struct ks_parsed_key pk;
		ks_key_parse(key_out, KS_KEY_LEN, &pk);
		ks_hmac(&ks->hmac, pk.secret, KS_SECRET_LEN, hash);
		int64_t now = ks_now();
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, pk.id, KS_KEY_ID_LEN, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, tenant_id);
		bind_text_or_null(st, 3, spec->name);
		sqlite3_bind_blob(st, 4, hash, sizeof hash, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 5, key_out + KS_KEY_LEN - 4, 4, SQLITE_TRANSIENT);
		bind_text_or_null(st, 6, spec->models);
		bind_limit(st, 7, spec->limits.rpm);
		bind_limit(st, 8, spec->limits.tpm);
		bind_limit(st, 9, spec->limits.concurrency);
		sqlite3_bind_int64(st, 10, now);
		sqlite3_bind_int64(st, 11, now);
		if (spec->expires_at)
			sqlite3_bind_int64(st, 12, spec->expires_at);
		else
			sqlite3_bind_null(st, 12);
		rc = step_write(ks, st, "create the key", NULL, err);
		if (rc != KS_ECONFLICT || attempt == 3)
			break;
	}
	if (rc != KS_OK)
		goto out;
	char id[KS_KEY_ID_LEN + 1];
	memcpy(id, key_out + 7, KS_KEY_ID_LEN);
	id[KS_KEY_ID_LEN] = '\0';
	if (out && (rc = key_get_locked(ks, id, out, err)) != KS_OK)
		goto out;
out:
	sodium_memzero(hash, sizeof hash);
	sqlite3_finalize(st);
	rc = txn_end(ks, rc, err);
	if (rc != KS_OK)
		sodium_memzero(key_out, KS_KEY_LEN + 1);
	return rc;
}

int ks_key_update(struct ks_store *ks, const char *id, const struct ks_key_spec *spec, unsigned mask,
		  struct ks_err *err)
{
	int rc = validate_key_id(id, err);
	if (rc == KS_OK)
		rc = validate_spec(spec, mask, err);
	if (rc != KS_OK)
		return rc;
	sqlite3_stmt *st = NULL;
	int changes = 0;
	if ((rc = txn_begin(ks, err)) != KS_OK)
		goto out;
	rc = prepare(ks,
		     "UPDATE api_keys SET"
		     " name = CASE WHEN ?2 THEN ?3 ELSE name END,"
		     " expires_at = CASE WHEN ?4 THEN ?5 ELSE expires_at END,"
		     " status = CASE WHEN ?4 AND status = 'expired' AND (?5 IS NULL OR ?5 > ?14)"
		     "   THEN 'active' ELSE status END,"
		     " models = CASE WHEN ?6 THEN ?7 ELSE models END,"
		     " rpm = CASE WHEN ?8 THEN ?9 ELSE rpm END,"
		     " tpm = CASE WHEN ?10 THEN ?11 ELSE tpm END,"
		     " concurrency = CASE WHEN ?12 THEN ?13 ELSE concurrency END,"
		     " updated_at = ?14 WHERE id = ?1",
		     &st, err);
	if (rc != KS_OK)
		goto out;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, !!(mask & KS_KEY_SET_NAME));
	bind_text_or_null(st, 3, spec->name);
	sqlite3_bind_int(st, 4, !!(mask & KS_KEY_SET_EXPIRES));
	bind_limit(st, 5, spec->expires_at);
	sqlite3_bind_int(st, 6, !!(mask & KS_KEY_SET_MODELS));
	bind_text_or_null(st, 7, spec->models);
	sqlite3_bind_int(st, 8, !!(mask & KS_LIM_RPM));
	bind_limit(st, 9, spec->limits.rpm);
	sqlite3_bind_int(st, 10, !!(mask & KS_LIM_TPM));
	bind_limit(st, 11, spec->limits.tpm);
	sqlite3_bind_int(st, 12, !!(mask & KS_LIM_CONCURRENCY));
	bind_limit(st, 13, spec->limits.concurrency);
	sqlite3_bind_int64(st, 14, ks_now());
	if ((rc = step_write(ks, st, "update the key", &changes, err)) != KS_OK)
		goto out;
	if (changes == 0) {
		ks_set_err(err, "key '%s' not found", id);
		rc = KS_ENOTFOUND;
		goto out;
	}
out:
	sqlite3_finalize(st);
	return txn_end(ks, rc, err);
}

int ks_key_revoke(struct ks_store *ks, const char *id, const char *reason, struct ks_err *err)
{
	int rc = validate_key_id(id, err);
	if (rc == KS_OK)
		rc = ks_validate_reason(reason, err);
	if (rc != KS_OK)
		return rc;
	sqlite3_stmt *st = NULL;
	int changes = 0;
	struct ks_key k;
	if ((rc = txn_begin(ks, err)) != KS_OK || (rc = key_get_locked(ks, id, &k, err)) != KS_OK)
		goto out;
	if (k.status == KS_KEY_REVOKED) {
		ks_set_err(err, "key '%s' is already revoked", id);
		rc = KS_ECONFLICT;
		goto out;
	}
	rc = prepare(ks,
		     "UPDATE api_keys SET status = 'revoked', revoked_at = ?2, revoke_reason = ?3,"
		     " updated_at = ?2 WHERE id = ?1",
		     &st, err);
	if (rc != KS_OK)
		goto out;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, ks_now());
	bind_text_or_null(st, 3, reason);
	if ((rc = step_write(ks, st, "revoke the key", &changes, err)) != KS_OK)
		goto out;
out:
	sqlite3_finalize(st);
	return txn_end(ks, rc, err);
}

int ks_key_rotate(struct ks_store *ks, const char *id, int64_t grace_secs,
		  char key_out[KS_KEY_LEN + 1], struct ks_err *err)
{
	int rc = validate_key_id(id, err);
	if (rc != KS_OK)
		return rc;
	if (grace_secs < 0 || grace_secs > 366LL * 86400) {
		ks_set_err(err, "grace period must be between 0 and 366 days");
		return KS_EINVAL;
	}
	sqlite3_stmt *st = NULL;
	struct ks_key k;
	uint8_t hash[32];
	if ((rc = txn_begin(ks, err)) != KS_OK || (rc = key_get_locked(ks, id, &k, err)) != KS_OK)
		goto out;
	if (k.status != KS_KEY_ACTIVE) {
		ks_set_err(err, "key '%s' is %s: only active keys can be rotated", id,
			   ks_key_status_name(k.status));
		rc = KS_ECONFLICT;
		goto out;
	}
	/* The current digest becomes the previous one; an older previous one is dropped now. */
	rc = prepare(ks,
		     "UPDATE api_keys SET"
		     " prev_secret_hash = CASE WHEN ?3 > 0 THEN secret_hash END,"
		     " prev_valid_until = CASE WHEN ?3 > 0 THEN ?4 + ?3 END,"
		     " secret_hash = ?2, hint = ?5, rotated_at = ?4, updated_at = ?4 WHERE id = ?1",
		     &st, err);
	if (rc != KS_OK)
		goto out;
	memcpy(key_out, KS_KEY_PREFIX, 7);
	memcpy(key_out + 7, id, KS_KEY_ID_LEN);
	key_out[7 + KS_KEY_ID_LEN] = '_';
	ks_key_regenerate_secret(key_out);
	struct ks_parsed_key pk;
	ks_key_parse(key_out, KS_KEY_LEN, &pk);
	ks_hmac(&ks->hmac, pk.secret, KS_SECRET_LEN, hash);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, hash, sizeof hash, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, grace_secs);
	sqlite3_bind_int64(st, 4, ks_now());
	sqlite3_bind_text(st, 5, key_out + KS_KEY_LEN - 4, 4, SQLITE_TRANSIENT);
	if ((rc = step_write(ks, st, "rotate the key", NULL, err)) != KS_OK)
		goto out;
out:
	sodium_memzero(hash, sizeof hash);
	sqlite3_finalize(st);
	rc = txn_end(ks, rc, err);
	if (rc != KS_OK)
		sodium_memzero(key_out, KS_KEY_LEN + 1);
	return rc;
}
