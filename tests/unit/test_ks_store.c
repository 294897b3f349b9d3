/*
 * keystore on real SQLite files: open and schema checks, pepper handling, tenants, keys, every
 * verify verdict, rotation, cross-process invalidation (two handles on one file), batched usage,
 * faults (locked database, damaged files) and concurrent verifiers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <keystore/ks.h>

#include "testutil.h"

struct fx {
	char dir[256];
	char db[300];
	char pepper[300];
	struct ks_store *ks;
};

static struct ks_store *open_flags(struct fx *f, unsigned flags, int *rc_out, struct ks_err *err)
{
	struct ks_options o = {.db_path = f->db, .flags = flags, .poll_ms = 50};
	struct ks_store *ks = NULL;
	struct ks_err local = {{0}};
	int rc = ks_open(&o, &ks, err ? err : &local);
	if (rc_out)
		*rc_out = rc;
	return ks;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	tu_mkdtemp(f->dir, sizeof f->dir, "ks");
	tu_path(f->db, sizeof f->db, f->dir, "ks.db");
	tu_path(f->pepper, sizeof f->pepper, f->dir, "ks.pepper");
	int rc;
	f->ks = open_flags(f, KS_OPEN_CREATE | KS_OPEN_MIGRATE, &rc, NULL);
	assert_int_equal(rc, KS_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	ks_close(f->ks);
	tu_rmrf(f->dir);
	free(f);
	return 0;
}

static void exec_sql(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	char *msg = NULL;
	int rc = sqlite3_exec(h, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "sql failed: %s\n", msg);
	assert_int_equal(rc, SQLITE_OK);
	sqlite3_close(h);
}

static void make_tenant(struct ks_store *ks, const char *name, int64_t rpm)
{
	struct ks_limits l = {.rpm = rpm, .tpm = 1000, .monthly_tokens = 50000};
	struct ks_err err = {{0}};
	assert_int_equal(ks_tenant_create(ks, name, &l, NULL, &err), KS_OK);
}

static void make_key(struct ks_store *ks, const char *tenant, char key[KS_KEY_LEN + 1],
		     const struct ks_key_spec *extra)
{
	struct ks_key_spec spec = {0};
	if (extra)
		spec = *extra;
	spec.tenant = tenant;
	struct ks_err err = {{0}};
	int rc = ks_key_create(ks, &spec, key, NULL, &err);
	if (rc != KS_OK)
		fprintf(stderr, "key create: %s\n", err.msg);
	assert_int_equal(rc, KS_OK);
}

static int verify(struct ks_store *ks, const char *key)
{
	return ks_key_verify(ks, key, strlen(key), NULL);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* ---- open, schema, pepper ---- */

static void test_ks_store__init_creates_private_files_and_is_rerunnable(void **state)
{
	struct fx *f = *state;
	struct stat st;
	assert_int_equal(stat(f->db, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(f->pepper, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	make_tenant(f->ks, "acme", 0);
	ks_close(f->ks);
	int rc;
	f->ks = open_flags(f, KS_OPEN_CREATE | KS_OPEN_MIGRATE, &rc, NULL); /* init again */
	assert_int_equal(rc, KS_OK);
	assert_int_equal(ks_tenant_get(f->ks, "acme", NULL, NULL), KS_OK);
	int applied, latest;
	assert_int_equal(ks_schema_version(f->ks, &applied, &latest), KS_OK);
	assert_int_equal(applied, latest);
	assert_true(latest >= 1);
	assert_int_equal(ks_check(f->ks, NULL), KS_OK);
}

static void test_ks_store__missing_store_is_not_created_by_plain_open(void **state)
{
	struct fx *f = *state;
	struct fx g = *f;
	tu_path(g.db, sizeof g.db, f->dir, "absent.db");
	int rc;
	struct ks_err err = {{0}};
	assert_null(open_flags(&g, 0, &rc, &err));
	assert_int_equal(rc, KS_ENOSTORE);
	assert_non_null(strstr(err.msg, "morgatectl init"));
	assert_int_equal(access(g.db, F_OK), -1);
}

static void test_ks_store__pepper_problems_are_precise(void **state)
{
	struct fx *f = *state;
	ks_close(f->ks);
	f->ks = NULL;
	int rc;
	struct ks_err err = {{0}};
	/* group-readable */
	assert_int_equal(chmod(f->pepper, 0644), 0);
	assert_null(open_flags(f, 0, &rc, &err));
	assert_int_equal(rc, KS_EPEPPER);
	assert_non_null(strstr(err.msg, "chmod 600"));
	assert_int_equal(chmod(f->pepper, 0600), 0);
	/* another store's pepper */
	char saved[100] = {0};
	int fd = open(f->pepper, O_RDONLY);
	assert_true(read(fd, saved, sizeof saved - 1) > 0);
	close(fd);
	fd = open(f->pepper, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
			       65), 65);
	close(fd);
	assert_null(open_flags(f, KS_OPEN_CREATE | KS_OPEN_MIGRATE, &rc, &err));
	assert_int_equal(rc, KS_EPEPPER);
	assert_non_null(strstr(err.msg, "does not belong"));
	/* malformed */
	fd = open(f->pepper, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "not hex\n", 8), 8);
	close(fd);
	assert_null(open_flags(f, 0, &rc, &err));
	assert_int_equal(rc, KS_EPEPPER);
	assert_non_null(strstr(err.msg, "malformed"));
	/* missing: init must not mint a new pepper for an existing store */
	unlink(f->pepper);
	assert_null(open_flags(f, KS_OPEN_CREATE | KS_OPEN_MIGRATE, &rc, &err));
	assert_int_equal(rc, KS_EPEPPER);
	assert_non_null(strstr(err.msg, "cannot read pepper file"));
	assert_int_equal(access(f->pepper, F_OK), -1);
	/* restored: works again */
	fd = open(f->pepper, O_WRONLY | O_CREAT, 0600);
	assert_int_equal(write(fd, saved, strlen(saved)), (ssize_t)strlen(saved));
	close(fd);
	f->ks = open_flags(f, 0, &rc, NULL);
	assert_int_equal(rc, KS_OK);
}

static void test_ks_store__newer_schema_is_refused(void **state)
{
	struct fx *f = *state;
	ks_close(f->ks);
	exec_sql(f->db, "PRAGMA user_version = 999");
	int rc;
	struct ks_err err = {{0}};
	f->ks = open_flags(f, KS_OPEN_CREATE | KS_OPEN_MIGRATE, &rc, &err);
	assert_null(f->ks);
	assert_int_equal(rc, KS_ESCHEMA_NEWER);
	assert_non_null(strstr(err.msg, "999"));
}

static void test_ks_store__hand_edits_are_detected(void **state)
{
	struct fx *f = *state;
	ks_close(f->ks);
	f->ks = NULL;
	int rc;
	struct ks_err err = {{0}};
	exec_sql(f->db, "UPDATE ks_schema_migrations SET sha256 = 'x' WHERE version = 1");
	assert_null(open_flags(f, 0, &rc, &err));
	assert_int_equal(rc, KS_ECORRUPT);
	assert_non_null(strstr(err.msg, "edited after it was applied"));

	/* a fresh store with a dropped trigger */
	tu_path(f->db, sizeof f->db, f->dir, "b.db");
	tu_path(f->pepper, sizeof f->pepper, f->dir, "b.pepper");
	struct ks_store *ks = open_flags(f, KS_OPEN_CREATE | KS_OPEN_MIGRATE, &rc, NULL);
	assert_int_equal(rc, KS_OK);
	ks_close(ks);
	exec_sql(f->db, "DROP TRIGGER keys_gen_upd");
	assert_null(open_flags(f, 0, &rc, &err));
	assert_int_equal(rc, KS_ECORRUPT);
	assert_non_null(strstr(err.msg, "keys_gen_upd"));
}

static void test_ks_store__foreign_and_garbage_files_are_refused(void **state)
{
	struct fx *f = *state;
	int rc;
	struct ks_err err = {{0}};
	struct fx g = *f;
	/* some other application's SQLite database */
	tu_path(g.db, sizeof g.db, f->dir, "other.db");
	exec_sql(g.db, "CREATE TABLE notes (t TEXT)");
	assert_null(open_flags(&g, KS_OPEN_CREATE | KS_OPEN_MIGRATE, &rc, &err));
	assert_int_equal(rc, KS_ECORRUPT);
	assert_non_null(strstr(err.msg, "not a morgate key store"));
	/* not a database at all */
	tu_path(g.db, sizeof g.db, f->dir, "junk.db");
	int fd = open(g.db, O_WRONLY | O_CREAT, 0600);
	char junk[8192];
	memset(junk, 'J', sizeof junk);
	assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
	close(fd);
	assert_null(open_flags(&g, 0, &rc, &err));
	assert_int_equal(rc, KS_ECORRUPT);
	assert_non_null(strstr(err.msg, "damaged"));
}

static void test_ks_store__truncated_store_fails_cleanly(void **state)
{
	struct fx *f = *state;
	make_tenant(f->ks, "acme", 0);
	char key[KS_KEY_LEN + 1];
	for (int i = 0; i < 200; i++)
		make_key(f->ks, "acme", key, NULL);
	ks_close(f->ks);
	f->ks = NULL;
	struct stat st;
	assert_int_equal(stat(f->db, &st), 0);
	assert_true(st.st_size > 16384);
	assert_int_equal(truncate(f->db, st.st_size / 2), 0);
	int rc;
	struct ks_err err = {{0}};
	struct ks_store *ks = open_flags(f, 0, &rc, &err);
	if (ks) { /* the header may survive: then the first full read must fail cleanly */
		rc = ks_check(ks, &err);
		ks_close(ks);
	}
	assert_int_equal(rc, KS_ECORRUPT);
	assert_non_null(strstr(err.msg, "damaged"));
}

/* ---- tenants ---- */

static void test_ks_store__tenant_lifecycle(void **state)
{
	struct fx *f = *state;
	struct ks_err err = {{0}};
	struct ks_tenant t;
	struct ks_limits l = {.rpm = 60, .monthly_tokens = 1000000};
	assert_int_equal(ks_tenant_create(f->ks, "acme", &l, &t, &err), KS_OK);
	assert_string_equal(t.name, "acme");
	assert_int_equal(t.limits.rpm, 60);
	assert_int_equal(t.limits.tpm, 0);
	assert_false(t.disabled);
	assert_int_equal(ks_tenant_create(f->ks, "acme", NULL, NULL, &err), KS_ECONFLICT);
	assert_non_null(strstr(err.msg, "already exists"));
	assert_int_equal(ks_tenant_create(f->ks, "bad name", NULL, NULL, &err), KS_EINVAL);
	struct ks_limits upd = {.rpm = 0, .tpm = 5000};
	assert_int_equal(ks_tenant_update(f->ks, "acme", &upd, KS_LIM_RPM | KS_LIM_TPM, &err), KS_OK);
	assert_int_equal(ks_tenant_get(f->ks, "acme", &t, &err), KS_OK);
	assert_int_equal(t.limits.rpm, 0);
	assert_int_equal(t.limits.tpm, 5000);
	assert_int_equal(t.limits.monthly_tokens, 1000000); /* untouched */
	assert_int_equal(ks_tenant_update(f->ks, "ghost", &upd, KS_LIM_RPM, &err), KS_ENOTFOUND);
	assert_non_null(strstr(err.msg, "'ghost' not found"));
	assert_int_equal(ks_tenant_set_disabled(f->ks, "acme", 1, &err), KS_OK);
	assert_int_equal(ks_tenant_get(f->ks, "acme", &t, &err), KS_OK);
	assert_true(t.disabled);
	assert_int_equal(ks_tenant_set_disabled(f->ks, "ghost", 1, &err), KS_ENOTFOUND);
}

/* ---- keys and verify ---- */

static int count_cb(void *ctx, const struct ks_key *k)
{
	(void)k;
	(*(int *)ctx)++;
	return 0;
}

static int lu_cb(void *ctx, const struct ks_key *k)
{
	if (k->last_used_at)
		(*(int *)ctx)++;
	return 0;
}

static void test_ks_store__verify_returns_effective_limits(void **state)
{
	struct fx *f = *state;
	make_tenant(f->ks, "acme", 60);
	char key[KS_KEY_LEN + 1];
	struct ks_key_spec spec = {.models = "llama-3,mistral", .limits = {.rpm = 10}};
	make_key(f->ks, "acme", key, &spec);
	struct ks_key_info info, again;
	memset(&info, 0, sizeof info); /* padding, so the structs compare bytewise below */
	memset(&again, 0, sizeof again);
	assert_int_equal(ks_key_verify(f->ks, key, KS_KEY_LEN, &info), KS_OK);
	assert_memory_equal(info.key_id, key + 7, KS_KEY_ID_LEN);
	assert_string_equal(info.tenant, "acme");
	assert_int_equal(info.limits.rpm, 10);       /* the key's override */
	assert_int_equal(info.limits.tpm, 1000);     /* inherited */
	assert_int_equal(info.tenant_limits.rpm, 60); /* the tenant's own, shared by all keys */
	assert_int_equal(info.tenant_limits.monthly_tokens, 50000);
	assert_true(ks_info_allows_model(&info, "llama-3", 7));
	assert_true(ks_info_allows_model(&info, "mistral", 7));
	assert_false(ks_info_allows_model(&info, "llama", 5));
	assert_false(ks_info_allows_model(&info, "llama-3,", 8));
	assert_false(ks_info_allows_model(&info, "gpt", 3));
	/* a second verify is a cache hit and gives the same answer */
	assert_int_equal(ks_key_verify(f->ks, key, KS_KEY_LEN, &again), KS_OK);
	assert_memory_equal(&again, &info, offsetof(struct ks_key_info, models));
	/* no allow-list: every model */
	make_key(f->ks, "acme", key, NULL);
	assert_int_equal(ks_key_verify(f->ks, key, KS_KEY_LEN, &info), KS_OK);
	assert_true(ks_info_allows_model(&info, "anything", 8));
}

static void test_ks_store__verify_verdicts(void **state)
{
	struct fx *f = *state;
	make_tenant(f->ks, "acme", 0);
	char key[KS_KEY_LEN + 1], forged[KS_KEY_LEN + 1], stranger[KS_KEY_LEN + 1];
	make_key(f->ks, "acme", key, NULL);
	assert_int_equal(verify(f->ks, key), KS_OK);
	assert_int_equal(verify(f->ks, "sk-mor-garbage"), KS_EMALFORMED);
	/* well-formed but never issued */
	struct fx g = *f;
	tu_path(g.db, sizeof g.db, f->dir, "other.db");
	tu_path(g.pepper, sizeof g.pepper, f->dir, "other.pepper");
	struct ks_store *other = open_flags(&g, KS_OPEN_CREATE | KS_OPEN_MIGRATE, NULL, NULL);
	make_tenant(other, "acme", 0);
	make_key(other, "acme", stranger, NULL);
	ks_close(other);
	assert_int_equal(verify(f->ks, stranger), KS_EUNKNOWN);
	assert_int_equal(verify(f->ks, stranger), KS_EUNKNOWN); /* negative cache */
	/* a typo in a real key never reaches the store: the checksum catches it */
	memcpy(forged, key, sizeof forged);
	forged[25] = forged[25] == 'a' ? 'b' : 'a';
	assert_int_equal(verify(f->ks, forged), KS_EMALFORMED);

	struct ks_err err = {{0}};
	assert_int_equal(ks_tenant_set_disabled(f->ks, "acme", 1, &err), KS_OK);
	assert_int_equal(verify(f->ks, key), KS_ETENANT_DISABLED);
	assert_int_equal(ks_tenant_set_disabled(f->ks, "acme", 0, &err), KS_OK);
	assert_int_equal(verify(f->ks, key), KS_OK);
	assert_int_equal(ks_key_revoke(f->ks, (char[13]){0}, NULL, &err), KS_EINVAL);
	char id[KS_KEY_ID_LEN + 1] = {0};
	memcpy(id, key + 7, KS_KEY_ID_LEN);
	assert_int_equal(ks_key_revoke(f->ks, id, "leaked", &err), KS_OK);
	assert_int_equal(verify(f->ks, key), KS_EREVOKED);
	assert_int_equal(ks_key_revoke(f->ks, id, NULL, &err), KS_ECONFLICT);
	struct ks_key k;
	assert_int_equal(ks_key_get(f->ks, id, &k, &err), KS_OK);
	assert_int_equal(k.status, KS_KEY_REVOKED);
	assert_string_equal(k.revoke_reason, "leaked");
	assert_int_equal(ks_key_revoke(f->ks, "AAAAAAAAAAAA", NULL, &err), KS_ENOTFOUND);
}

/* The right id with a wrong (but well-formed) secret is indistinguishable from an unknown key. */
static void test_ks_store__wrong_secret_for_existing_id_is_unknown(void **state)
{
	struct fx *f = *state;
	make_tenant(f->ks, "acme", 0);
	char key[KS_KEY_LEN + 1], old[KS_KEY_LEN + 1];
	make_key(f->ks, "acme", key, NULL);
	memcpy(old, key, sizeof old);
	char id[KS_KEY_ID_LEN + 1] = {0};
	memcpy(id, key + 7, KS_KEY_ID_LEN);
	struct ks_err err = {{0}};
	/* rotate with no grace: the old secret is now simply wrong for this id */
	assert_int_equal(ks_key_rotate(f->ks, id, 0, key, &err), KS_OK);
	assert_memory_equal(key, old, 20);
	assert_int_equal(verify(f->ks, key), KS_OK);
	assert_int_equal(verify(f->ks, old), KS_EUNKNOWN);
}

static void test_ks_store__expiry_and_rotation_grace(void **state)
{
	struct fx *f = *state;
	make_tenant(f->ks, "acme", 0);
	char key[KS_KEY_LEN + 1], newkey[KS_KEY_LEN + 1];
	struct ks_key_spec spec = {.expires_at = time(NULL) + 1};
	make_key(f->ks, "acme", key, &spec);
	assert_int_equal(verify(f->ks, key), KS_OK);
	struct ks_err err = {{0}};
	char id[KS_KEY_ID_LEN + 1] = {0};
	struct ks_key_spec past = {.expires_at = time(NULL) - 10};
	memcpy(id, key + 7, KS_KEY_ID_LEN);
	assert_int_equal(ks_key_update(f->ks, id, &past, KS_KEY_SET_EXPIRES, &err), KS_EINVAL);

	char rkey[KS_KEY_LEN + 1], rid[KS_KEY_ID_LEN + 1] = {0};
	make_key(f->ks, "acme", rkey, NULL);
	memcpy(rid, rkey + 7, KS_KEY_ID_LEN);
	assert_int_equal(ks_key_rotate(f->ks, rid, 1, newkey, &err), KS_OK);
	assert_int_equal(verify(f->ks, newkey), KS_OK);
	assert_int_equal(verify(f->ks, rkey), KS_OK); /* within grace */

	sleep_ms(2100);
	assert_int_equal(verify(f->ks, key), KS_EEXPIRED);
	assert_int_equal(verify(f->ks, rkey), KS_EREVOKED); /* grace over */
	assert_int_equal(verify(f->ks, newkey), KS_OK);
	struct ks_key k;
	assert_int_equal(ks_key_get(f->ks, id, &k, &err), KS_OK);
	assert_int_equal(k.status, KS_KEY_EXPIRED);
	assert_int_equal(ks_key_rotate(f->ks, id, 0, newkey, &err), KS_ECONFLICT);
	/* extending an expired key brings it back */
	struct ks_key_spec later = {.expires_at = time(NULL) + 3600};
	assert_int_equal(ks_key_update(f->ks, id, &later, KS_KEY_SET_EXPIRES, &err), KS_OK);
	assert_int_equal(verify(f->ks, key), KS_OK);
	assert_int_equal(ks_key_rotate(f->ks, id, 400LL * 86400, newkey, &err), KS_EINVAL);
}

static void test_ks_store__other_handle_sees_revocation_within_poll_interval(void **state)
{
	struct fx *f = *state;
	make_tenant(f->ks, "acme", 0);
	char key[KS_KEY_LEN + 1], id[KS_KEY_ID_LEN + 1] = {0};
	make_key(f->ks, "acme", key, NULL);
	memcpy(id, key + 7, KS_KEY_ID_LEN);
	/* a second handle on the same file stands for the CLI in another process */
	int rc;
	struct ks_store *cli = open_flags(f, KS_OPEN_NO_LAST_USED, &rc, NULL);
	assert_int_equal(rc, KS_OK);
	for (int i = 0; i < 100; i++)
		assert_int_equal(verify(f->ks, key), KS_OK); /* cached */
	struct ks_err err = {{0}};
	assert_int_equal(ks_key_revoke(cli, id, NULL, &err), KS_OK);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (verify(f->ks, key) == KS_OK) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		assert_true(t1.tv_sec - t0.tv_sec < 2);
		sleep_ms(5);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	assert_true(ms < 50 + 30); /* poll_ms is 50 here; coarse clocks add a few ms */
	assert_int_equal(verify(f->ks, key), KS_EREVOKED);
	/* and a new key made elsewhere is usable at once, though its id was negative-cached */
	char key2[KS_KEY_LEN + 1];
	make_key(cli, "acme", key2, NULL);
	sleep_ms(60);
	assert_int_equal(verify(f->ks, key2), KS_OK);
	ks_close(cli);
}

static void test_ks_store__key_list_and_update(void **state)
{
	struct fx *f = *state;
	make_tenant(f->ks, "acme", 0);
	make_tenant(f->ks, "beta", 0);
	char key[KS_KEY_LEN + 1];
	struct ks_key_spec spec = {.name = "ci"};
	make_key(f->ks, "acme", key, &spec);
	make_key(f->ks, "acme", key, NULL);
	make_key(f->ks, "beta", key, NULL);
	int n = 0;
	struct ks_err err = {{0}};
	assert_int_equal(ks_key_list(f->ks, "acme", count_cb, &n, &err), KS_OK);
	assert_int_equal(n, 2);
	n = 0;
	assert_int_equal(ks_key_list(f->ks, NULL, count_cb, &n, &err), KS_OK);
	assert_int_equal(n, 3);
	assert_int_equal(ks_key_list(f->ks, "ghost", count_cb, &n, &err), KS_ENOTFOUND);
	char id[KS_KEY_ID_LEN + 1] = {0};
	memcpy(id, key + 7, KS_KEY_ID_LEN);
	struct ks_key_spec upd = {.name = "renamed", .models = "m1", .limits = {.concurrency = 3}};
	assert_int_equal(ks_key_update(f->ks, id, &upd,
				       KS_KEY_SET_NAME | KS_KEY_SET_MODELS | KS_LIM_CONCURRENCY, &err),
			 KS_OK);
	struct ks_key k;
	assert_int_equal(ks_key_get(f->ks, id, &k, &err), KS_OK);
	assert_string_equal(k.name, "renamed");
	assert_string_equal(k.models, "m1");
	assert_int_equal(k.limits.concurrency, 3);
	struct ks_key_info info;
	assert_int_equal(ks_key_verify(f->ks, key, KS_KEY_LEN, &info), KS_OK);
	assert_int_equal(info.limits.concurrency, 3);
	assert_false(ks_info_allows_model(&info, "m2", 2));
	struct ks_key_spec bad = {.models = "a,,b"};
	assert_int_equal(ks_key_update(f->ks, id, &bad, KS_KEY_SET_MODELS, &err), KS_EINVAL);
	struct ks_key_spec monthly = {.limits = {.monthly_tokens = 5}};
	assert_int_equal(ks_key_update(f->ks, id, &monthly, KS_LIM_MONTHLY, &err), KS_EINVAL);
	struct ks_key_spec ghost = {.tenant = "ghost"};
	assert_int_equal(ks_key_create(f->ks, &ghost, key, NULL, &err), KS_ENOTFOUND);
	assert_int_equal(key[0], '\0'); /* nothing half-issued */
}

/* ---- usage ---- */

struct usage_sum {
	int rows;
	int64_t req, pt, ct;
	char first[KS_MODEL_MAX + 1];
};

static int usage_cb(void *ctx, const struct ks_usage_row *r)
{
	struct usage_sum *s = ctx;
	if (!s->rows++)
		snprintf(s->first, sizeof s->first, "%s", r->group);
	s->req += r->requests;
	s->pt += r->prompt_tokens;
	s->ct += r->completion_tokens;
	return 0;
}

static void test_ks_store__usage_is_batched_and_survives_a_locked_store(void **state)
{
	struct fx *f = *state;
	make_tenant(f->ks, "acme", 0);
	char key[KS_KEY_LEN + 1], id[KS_KEY_ID_LEN + 1] = {0};
	make_key(f->ks, "acme", key, NULL);
	memcpy(id, key + 7, KS_KEY_ID_LEN);
	assert_int_equal(verify(f->ks, key), KS_OK);
	for (int i = 0; i < 10; i++)
		assert_int_equal(ks_usage_record(f->ks, id, i % 2 ? "m1" : "m2", 3, 5), KS_OK);
	assert_int_equal(ks_usage_record(f->ks, "short", "m1", 1, 1), KS_EINVAL);
	assert_int_equal(ks_usage_record(f->ks, id, "m1", -1, 1), KS_EINVAL);

	/* nothing reaches the database before a flush */
	struct ks_err err = {{0}};
	struct ks_usage_filter byday = {0}, bymodel = {.by_model = 1};
	struct usage_sum s = {0};
	assert_int_equal(ks_usage_query(f->ks, &byday, usage_cb, &s, &err), KS_OK);
	assert_int_equal(s.rows, 0);

	/* another process holds the write lock: the flush fails, keeps everything */
	sqlite3 *locker = NULL;
	assert_int_equal(sqlite3_open(f->db, &locker), SQLITE_OK);
	assert_int_equal(sqlite3_exec(locker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	struct ks_options o = {.db_path = f->db, .busy_timeout_ms = 50};
	struct ks_store *impatient = NULL;
	assert_int_equal(ks_open(&o, &impatient, &err), KS_OK);
	assert_int_equal(ks_usage_record(impatient, id, "m1", 100, 200), KS_OK);
	assert_int_equal(ks_flush(impatient, &err), KS_EBUSY);
	assert_non_null(strstr(err.msg, "locked"));
	assert_int_equal(sqlite3_exec(locker, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(locker);
	assert_int_equal(ks_flush(impatient, &err), KS_OK);
	ks_close(impatient);

	assert_int_equal(ks_flush(f->ks, &err), KS_OK);
	memset(&s, 0, sizeof s);
	assert_int_equal(ks_usage_query(f->ks, &byday, usage_cb, &s, &err), KS_OK);
	assert_int_equal(s.rows, 1);
	assert_int_equal(s.req, 11);
	assert_int_equal(s.pt, 130);
	assert_int_equal(s.ct, 250);
	memset(&s, 0, sizeof s);
	assert_int_equal(ks_usage_query(f->ks, &bymodel, usage_cb, &s, &err), KS_OK);
	assert_int_equal(s.rows, 2);
	assert_string_equal(s.first, "m1");
	/* filters */
	struct ks_usage_filter future = {.since = "2999-01-01"};
	memset(&s, 0, sizeof s);
	assert_int_equal(ks_usage_query(f->ks, &future, usage_cb, &s, &err), KS_OK);
	assert_int_equal(s.rows, 0);
	struct ks_usage_filter ghost = {.tenant = "ghost"};
	assert_int_equal(ks_usage_query(f->ks, &ghost, usage_cb, &s, &err), KS_ENOTFOUND);
	struct ks_usage_filter baddate = {.since = "yesterday"};
	assert_int_equal(ks_usage_query(f->ks, &baddate, usage_cb, &s, &err), KS_EINVAL);
	/* last-used time was written by the flush, not by the verify */
	struct ks_key k;
	assert_int_equal(ks_key_get(f->ks, id, &k, &err), KS_OK);
	assert_true(k.last_used_at >= time(NULL) - 5);
}

/* ---- concurrency ---- */

struct worker {
	struct ks_store *ks;
	const char *key;
	const char *victim;
	int ok, revoked, other;
	volatile int *stop;
};

static void *verifier(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 200000 && !*w->stop; i++) {
		int rc = verify(w->ks, i % 2 ? w->key : w->victim);
		if (rc == KS_OK)
			w->ok++;
		else if (rc == KS_EREVOKED)
			w->revoked++;
		else
			w->other++;
	}
	return NULL;
}

static void test_ks_store__concurrent_verifiers_and_writers(void **state)
{
	struct fx *f = *state;
	make_tenant(f->ks, "acme", 0);
	char key[KS_KEY_LEN + 1], victim[KS_KEY_LEN + 1], vid[KS_KEY_ID_LEN + 1] = {0};
	make_key(f->ks, "acme", key, NULL);
	make_key(f->ks, "acme", victim, NULL);
	memcpy(vid, victim + 7, KS_KEY_ID_LEN);
	volatile int stop = 0;
	struct worker w[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){f->ks, key, victim, 0, 0, 0, &stop};
		pthread_create(&th[i], NULL, verifier, &w[i]);
	}
	/* a writer on another handle creates keys and revokes one mid-flight */
	struct ks_store *cli = open_flags(f, 0, NULL, NULL);
	struct ks_err err = {{0}};
	char scratch[KS_KEY_LEN + 1];
	for (int i = 0; i < 20; i++)
		make_key(cli, "acme", scratch, NULL);
	assert_int_equal(ks_key_revoke(cli, vid, NULL, &err), KS_OK);
	for (int i = 0; i < 20; i++)
		make_key(cli, "acme", scratch, NULL);
	sleep_ms(120);
	stop = 1;
	int ok = 0, revoked = 0, other = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		ok += w[i].ok, revoked += w[i].revoked, other += w[i].other;
	}
	ks_close(cli);
	assert_int_equal(other, 0);
	assert_true(ok > 0);
	assert_true(revoked > 0);
	assert_int_equal(verify(f->ks, victim), KS_EREVOKED);
	assert_int_equal(verify(f->ks, key), KS_OK);
}

static void test_ks_store__small_cache_evicts_and_stays_correct(void **state)
{
	struct fx *f = *state;
	ks_close(f->ks);
	struct ks_options o = {.db_path = f->db, .cache_entries = 64};
	struct ks_err err = {{0}};
	assert_int_equal(ks_open(&o, &f->ks, &err), KS_OK);
	make_tenant(f->ks, "acme", 0);
	enum { N = 400 };
	static char keys[N][KS_KEY_LEN + 1];
	for (int i = 0; i < N; i++)
		make_key(f->ks, "acme", keys[i], NULL);
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < N; i++)
			assert_int_equal(verify(f->ks, keys[i]), KS_OK);
	assert_int_equal(ks_flush(f->ks, &err), KS_OK); /* evicted entries' last-used kept */
	int with_last_used = 0;
	assert_int_equal(ks_key_list(f->ks, "acme", lu_cb, &with_last_used, &err), KS_OK);
	assert_int_equal(with_last_used, N);
}

#define T(name) cmocka_unit_test_setup_teardown(test_ks_store__##name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(init_creates_private_files_and_is_rerunnable),
		T(missing_store_is_not_created_by_plain_open),
		T(pepper_problems_are_precise),
		T(newer_schema_is_refused),
		T(hand_edits_are_detected),
		T(foreign_and_garbage_files_are_refused),
		T(truncated_store_fails_cleanly),
		T(tenant_lifecycle),
		T(verify_returns_effective_limits),
		T(verify_verdicts),
		T(wrong_secret_for_existing_id_is_unknown),
		T(expiry_and_rotation_grace),
		T(other_handle_sees_revocation_within_poll_interval),
		T(key_list_and_update),
		T(usage_is_batched_and_survives_a_locked_store),
		T(concurrent_verifiers_and_writers),
		T(small_cache_evicts_and_stays_correct),
	};
	return cmocka_run_group_tests_name("ks_store", tests, NULL, NULL);
}
