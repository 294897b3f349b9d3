/*
 * keystore session records (migration 0002) on real SQLite files: put and replace by local id,
 * get by full id, unique prefix, ambiguous prefix and local id, list newest first and by state,
 * field validation, lowercase canonical hex, one row per session id, no effect on the verify
 * cache's change counter, and the upgrade of a store created before the table existed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include <keystore/ks.h>

#include "testutil.h"

struct fx {
	char dir[256];
	char db[300];
	struct ks_store *ks;
};

static int open_store(struct fx *f, unsigned flags, struct ks_store **out)
{
	struct ks_options o = {.db_path = f->db, .flags = flags, .poll_ms = 50};
	struct ks_err err = {{0}};
	int rc = ks_open(&o, out, &err);
	if (rc != KS_OK && rc != KS_ESCHEMA_OLDER)
		fprintf(stderr, "open: %s\n", err.msg);
	return rc;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	tu_mkdtemp(f->dir, sizeof f->dir, "kss");
	tu_path(f->db, sizeof f->db, f->dir, "ks.db");
	assert_int_equal(open_store(f, KS_OPEN_CREATE | KS_OPEN_MIGRATE, &f->ks), KS_OK);
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

static int64_t query_int(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

/* 0x followed by 64 hex digits made of the given 2-digit byte, e.g. hex32(buf, "ab"). */
static void hex32(char out[67], const char *byte2)
{
	out[0] = '0';
	out[1] = 'x';
	for (int i = 0; i < 32; i++)
		memcpy(out + 2 + 2 * i, byte2, 2);
	out[66] = '\0';
}

static struct ks_session sample(int64_t local_id, const char *id_byte, const char *state,
				int64_t opened_at)
{
	struct ks_session s;
	memset(&s, 0, sizeof s);
	s.local_id = local_id;
	if (id_byte)
		hex32(s.id, id_byte);
	strcpy(s.model, "llama-3.3-70b");
	hex32(s.model_id, "11");
	hex32(s.bid_id, "22");
	strcpy(s.provider, "0x00000000000000000000000000000000000000aa");
	strcpy(s.endpoint, "127.0.0.1:3333");
	s.provider_key[0] = '0';
	s.provider_key[1] = 'x';
	s.provider_key[2] = '0';
	s.provider_key[3] = '4';
	memset(s.provider_key + 4, 'c', 128);
	s.provider_key[132] = '\0';
	strcpy(s.stake, "1234567890123456789");
	strcpy(s.price, "10000000000");
	s.opened_at = opened_at;
	s.ends_at = opened_at ? opened_at + 600 : 0;
	strcpy(s.state, state);
	s.requests = 3;
	s.failures = 1;
	hex32(s.open_tx, "33");
	s.updated_at = 1700000000000;
	return s;
}

static void put_ok(struct ks_store *ks, const struct ks_session *s)
{
	struct ks_err err = {{0}};
	int rc = ks_session_put(ks, s, &err);
	if (rc != KS_OK)
		fprintf(stderr, "put: %s\n", err.msg);
	assert_int_equal(rc, KS_OK);
}

static void test_ks_session__put_get_round_trip_and_replace(void **state)
{
	struct fx *f = *state;
	struct ks_session s = sample(42, "ab", "open", 1700000000), got;
	put_ok(f->ks, &s);
	assert_int_equal(ks_session_get(f->ks, "42", &got, NULL), KS_OK);
	assert_memory_equal(&s, &got, sizeof s);
	assert_int_equal(ks_session_get(f->ks, s.id, &got, NULL), KS_OK);
	assert_int_equal(got.local_id, 42);

	/* the same local id again: the row is replaced, not duplicated */
	strcpy(s.state, "closed");
	s.closed_at = 1700000700;
	s.dispute = 1;
	hex32(s.close_tx, "44");
	s.requests = 9;
	put_ok(f->ks, &s);
	assert_int_equal(ks_session_get(f->ks, "42", &got, NULL), KS_OK);
	assert_string_equal(got.state, "closed");
	assert_int_equal(got.closed_at, 1700000700);
	assert_int_equal(got.dispute, 1);
	assert_string_equal(got.close_tx, s.close_tx);
	assert_int_equal(got.requests, 9);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM sessions"), 1);
}

static void test_ks_session__opening_row_has_no_id_and_empty_fields(void **state)
{
	struct fx *f = *state;
	struct ks_session s, got;
	memset(&s, 0, sizeof s);
	s.local_id = -5; /* a random uint64 above INT64_MAX is stored as a negative int64 */
	strcpy(s.model, "m");
	strcpy(s.state, "opening");
	put_ok(f->ks, &s);
	struct ks_session t = s;
	t.local_id = 6; /* a second row with no session id: NULL ids do not collide */
	put_ok(f->ks, &t);
	assert_int_equal(ks_session_get(f->ks, "-5", &got, NULL), KS_OK);
	assert_string_equal(got.id, "");
	assert_string_equal(got.stake, "");
	assert_string_equal(got.provider_key, "");
	assert_true(got.updated_at > 1700000000000); /* 0 means "now" */
	/* the uint64 spelling of the same bits finds it too */
	assert_int_equal(ks_session_get(f->ks, "18446744073709551611", &got, NULL), KS_OK);
	assert_int_equal(got.local_id, -5);
}

static void test_ks_session__get_by_prefix_unique_ambiguous_missing(void **state)
{
	struct fx *f = *state;
	struct ks_session a = sample(1, "ab", "open", 100), b = sample(2, "ab", "open", 200), got;
	/* two ids sharing their first 62 digits (0xabab...ab), b's 63rd digit differs */
	b.id[64] = 'c';
	put_ok(f->ks, &a);
	put_ok(f->ks, &b);
	struct ks_session c = sample(3, "cd", "open", 300);
	put_ok(f->ks, &c);

	struct ks_err err = {{0}};
	assert_int_equal(ks_session_get(f->ks, "0xcdcdcd", &got, &err), KS_OK);
	assert_int_equal(got.local_id, 3);
	assert_int_equal(ks_session_get(f->ks, "0xCDCDCD", &got, &err), KS_OK); /* any case */
	assert_int_equal(got.local_id, 3);
	assert_int_equal(ks_session_get(f->ks, "0xababab", &got, &err), KS_ECONFLICT);
	assert_non_null(strstr(err.msg, "several sessions"));
	char longer[67];
	memcpy(longer, b.id, 66);
	longer[65] = '\0'; /* 63 digits: still unique to b */
	assert_int_equal(ks_session_get(f->ks, longer, &got, &err), KS_OK);
	assert_int_equal(got.local_id, 2);
	assert_int_equal(ks_session_get(f->ks, "0xeeeeee", &got, &err), KS_ENOTFOUND);
	assert_non_null(strstr(err.msg, "not found"));
	assert_int_equal(ks_session_get(f->ks, "77", &got, &err), KS_ENOTFOUND);
	char full[67];
	hex32(full, "ef");
	assert_int_equal(ks_session_get(f->ks, full, &got, &err), KS_ENOTFOUND);
}

static void test_ks_session__get_rejects_bad_names(void **state)
{
	struct fx *f = *state;
	static const char *const bad[] = {
		"", "0x", "0xabc", "0xabcde", "0xabcdeg", "abcdef", "0", "1.5", "-", "--1", "1e5",
		"99999999999999999999999", "0x' OR 1=1 --",
		"0x00000000000000000000000000000000000000000000000000000000000000000", /* 65 */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct ks_err err = {{0}};
		int rc = ks_session_get(f->ks, bad[i], NULL, &err);
		if (rc != KS_EINVAL)
			fprintf(stderr, "accepted '%s'\n", bad[i]);
		assert_int_equal(rc, KS_EINVAL);
		assert_true(err.msg[0] != '\0');
	}
	assert_int_equal(ks_session_get(f->ks, NULL, NULL, NULL), KS_EINVAL);
}

struct collected {
	int n;
	int64_t ids[16];
	int stop_after;
};

static int collect(void *ctx, const struct ks_session *s)
{
	struct collected *c = ctx;
	c->ids[c->n++] = s->local_id;
	return c->stop_after && c->n == c->stop_after ? 7 : 0;
}

static void test_ks_session__list(void **state)
{
	struct fx *f = *state;
	struct ks_session s1 = sample(1, "01", "closed", 1000), s2 = sample(2, "02", "open", 3000),
			  s3 = sample(3, "03", "open", 2000), s4 = sample(4, NULL, "opening", 0);
	s4.updated_at = 4000 * 1000LL; /* still opening: ordered by its last change */
	put_ok(f->ks, &s1);
	put_ok(f->ks, &s2);
	put_ok(f->ks, &s3);
	put_ok(f->ks, &s4);

	struct collected c = {0};
	assert_int_equal(ks_session_list(f->ks, NULL, collect, &c, NULL), KS_OK);
	assert_int_equal(c.n, 4);
	assert_int_equal(c.ids[0], 4);
	assert_int_equal(c.ids[1], 2);
	assert_int_equal(c.ids[2], 3);
	assert_int_equal(c.ids[3], 1);

	memset(&c, 0, sizeof c);
	assert_int_equal(ks_session_list(f->ks, "open", collect, &c, NULL), KS_OK);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.ids[0], 2);
	assert_int_equal(c.ids[1], 3);

	memset(&c, 0, sizeof c);
	assert_int_equal(ks_session_list(f->ks, "failed", collect, &c, NULL), KS_OK);
	assert_int_equal(c.n, 0);

	memset(&c, 0, sizeof c);
	c.stop_after = 1; /* a non-zero return from the callback stops the walk and is returned */
	assert_int_equal(ks_session_list(f->ks, NULL, collect, &c, NULL), 7);
	assert_int_equal(c.n, 1);

	struct ks_err err = {{0}};
	assert_int_equal(ks_session_list(f->ks, "bogus", collect, &c, &err), KS_EINVAL);
	assert_non_null(strstr(err.msg, "bogus"));
	assert_int_equal(ks_session_list(f->ks, "", collect, &c, &err), KS_EINVAL);
}

static void expect_invalid(struct ks_store *ks, const struct ks_session *s, const char *needle)
{
	struct ks_err err = {{0}};
	assert_int_equal(ks_session_put(ks, s, &err), KS_EINVAL);
	if (!strstr(err.msg, needle))
		fprintf(stderr, "message '%s' lacks '%s'\n", err.msg, needle);
	assert_non_null(strstr(err.msg, needle));
}

static void test_ks_session__put_validates_every_field(void **state)
{
	struct fx *f = *state;
	struct ks_session s;

	s = sample(1, "ab", "open", 1);
	s.id[10] = 'g';
	expect_invalid(f->ks, &s, "'id'");
	s = sample(1, "ab", "open", 1);
	s.id[65] = '\0'; /* 63 digits */
	expect_invalid(f->ks, &s, "'id'");
	s = sample(1, "ab", "open", 1);
	s.id[1] = 'y';
	expect_invalid(f->ks, &s, "'id'");
	s = sample(1, "ab", "open", 1);
	memset(s.model, 'm', sizeof s.model); /* no NUL: over-long */
	expect_invalid(f->ks, &s, "'model'");
	s = sample(1, "ab", "open", 1);
	s.model[0] = '\0';
	expect_invalid(f->ks, &s, "'model'");
	s = sample(1, "ab", "open", 1);
	strcpy(s.endpoint, "host:1\x1b[2J");
	expect_invalid(f->ks, &s, "'endpoint'");
	s = sample(1, "ab", "open", 1);
	memset(s.endpoint, 'e', sizeof s.endpoint);
	expect_invalid(f->ks, &s, "'endpoint'");
	s = sample(1, "ab", "open", 1);
	strcpy(s.provider, "0x1234");
	expect_invalid(f->ks, &s, "'provider'");
	s = sample(1, "ab", "open", 1);
	s.provider_key[3] = '2'; /* compressed form */
	expect_invalid(f->ks, &s, "'provider_key'");
	s = sample(1, "ab", "open", 1);
	strcpy(s.stake, "12a");
	expect_invalid(f->ks, &s, "'stake'");
	s = sample(1, "ab", "open", 1);
	memset(s.price, '9', 79); /* 79 digits: more than a uint256 */
	s.price[79] = '\0';
	expect_invalid(f->ks, &s, "'price'");
	s = sample(1, "ab", "open", 1);
	strcpy(s.state, "opened");
	expect_invalid(f->ks, &s, "state");
	s = sample(1, "ab", "open", 1);
	memset(s.state, 'o', sizeof s.state);
	expect_invalid(f->ks, &s, "state");
	s = sample(1, "ab", "open", 1);
	s.requests = -1;
	expect_invalid(f->ks, &s, "negative");
	s = sample(1, "ab", "open", 1);
	s.ends_at = -1;
	expect_invalid(f->ks, &s, "negative");
	s = sample(0, "ab", "open", 1);
	expect_invalid(f->ks, &s, "local id");
	s = sample(1, "ab", "open", 1);
	s.close_tx[0] = 'x';
	s.close_tx[1] = '\0';
	expect_invalid(f->ks, &s, "'close_tx'");
	s = sample(1, "ab", "open", 1);
	strcpy(s.bid_id, "0x12");
	expect_invalid(f->ks, &s, "'bid_id'");
	s = sample(1, "ab", "open", 1);
	strcpy(s.model_id, "12");
	expect_invalid(f->ks, &s, "'model_id'");
	s = sample(1, "ab", "open", 1);
	strcpy(s.open_tx, "0x");
	expect_invalid(f->ks, &s, "'open_tx'");

	assert_int_equal(query_int(f->db, "SELECT count(*) FROM sessions"), 0);

	/* limits that are fine: a 128-byte model, UTF-8, the largest amount */
	s = sample(1, "ab", "open", 1);
	memset(s.model, 'm', 128);
	s.model[128] = '\0';
	memset(s.stake, '9', 78);
	s.stake[78] = '\0';
	strcpy(s.endpoint, "\xc3\xa9t\xc3\xa9.example:3333");
	put_ok(f->ks, &s);
}

static void test_ks_session__hex_is_stored_lowercase(void **state)
{
	struct fx *f = *state;
	struct ks_session s = sample(8, "AB", "open", 1), got;
	strcpy(s.provider, "0x00000000000000000000000000000000000000AA");
	s.id[1] = 'X';
	put_ok(f->ks, &s);
	char want[67];
	hex32(want, "ab");
	assert_int_equal(ks_session_get(f->ks, want, &got, NULL), KS_OK);
	assert_string_equal(got.id, want);
	assert_string_equal(got.provider, "0x00000000000000000000000000000000000000aa");
}

static void test_ks_session__same_session_id_keeps_one_row(void **state)
{
	struct fx *f = *state;
	struct ks_session a = sample(10, "ab", "open", 1), b = sample(11, "ab", "retired", 2), got;
	put_ok(f->ks, &a);
	put_ok(f->ks, &b); /* found again after a restart under a new local id */
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM sessions"), 1);
	assert_int_equal(ks_session_get(f->ks, a.id, &got, NULL), KS_OK);
	assert_int_equal(got.local_id, 11);
	assert_string_equal(got.state, "retired");
	assert_int_equal(ks_session_get(f->ks, "10", &got, NULL), KS_ENOTFOUND);
}

static void test_ks_session__writes_leave_the_verify_generation_alone(void **state)
{
	struct fx *f = *state;
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
					  " AND tbl_name = 'sessions'"),
			 0);
	int64_t before = query_int(f->db, "SELECT CAST(v AS INTEGER) FROM ks_meta WHERE k = 'generation'");
	for (int i = 1; i <= 20; i++) {
		char b[3];
		snprintf(b, sizeof b, "%02x", i);
		struct ks_session s = sample(i, b, "open", i);
		put_ok(f->ks, &s);
		strcpy(s.state, "closed");
		put_ok(f->ks, &s);
	}
	int64_t after = query_int(f->db, "SELECT CAST(v AS INTEGER) FROM ks_meta WHERE k = 'generation'");
	assert_int_equal(before, after);
	/* a tenant change still bumps it: the counter itself works */
	assert_int_equal(ks_tenant_create(f->ks, "acme", NULL, NULL, NULL), KS_OK);
	assert_true(query_int(f->db, "SELECT CAST(v AS INTEGER) FROM ks_meta WHERE k = 'generation'") >
		    after);
}

static void test_ks_session__rows_survive_reopen(void **state)
{
	struct fx *f = *state;
	struct ks_session s = sample(77, "77", "open", 5), got;
	put_ok(f->ks, &s);
	ks_close(f->ks);
	f->ks = NULL;
	assert_int_equal(open_store(f, 0, &f->ks), KS_OK);
	assert_int_equal(ks_session_get(f->ks, "0x777777", &got, NULL), KS_OK);
	assert_memory_equal(&s, &got, sizeof s);
	assert_int_equal(ks_check(f->ks, NULL), KS_OK);
}

/* A store made before 0002 (schema version 1) is refused as older until migrated, then gets the
 * table; its tenants are untouched. */
static void test_ks_session__store_from_before_sessions_is_migrated(void **state)
{
	struct fx *f = *state;
	assert_int_equal(ks_tenant_create(f->ks, "acme", NULL, NULL, NULL), KS_OK);
	ks_close(f->ks);
	f->ks = NULL;
	exec_sql(f->db, "BEGIN; DROP TABLE sessions; DELETE FROM ks_schema_migrations WHERE version >= 2;"
			" PRAGMA user_version = 1; COMMIT");
	assert_int_equal(open_store(f, 0, &f->ks), KS_ESCHEMA_OLDER);
	ks_close(f->ks);
	f->ks = NULL;
	assert_int_equal(open_store(f, KS_OPEN_MIGRATE, &f->ks), KS_OK);
	int applied, latest;
	assert_int_equal(ks_schema_version(f->ks, &applied, &latest), KS_OK);
	assert_int_equal(applied, latest);
	assert_true(latest >= 2);
	struct ks_session s = sample(1, "ab", "open", 1);
	put_ok(f->ks, &s);
	assert_int_equal(ks_tenant_get(f->ks, "acme", NULL, NULL), KS_OK);
	assert_int_equal(ks_check(f->ks, NULL), KS_OK);
}

#define T(name) cmocka_unit_test_setup_teardown(test_ks_session__##name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(put_get_round_trip_and_replace),
		T(opening_row_has_no_id_and_empty_fields),
		T(get_by_prefix_unique_ambiguous_missing),
		T(get_rejects_bad_names),
		T(list),
		T(put_validates_every_field),
		T(hex_is_stored_lowercase),
		T(same_session_id_keeps_one_row),
		T(writes_leave_the_verify_generation_alone),
		T(rows_survive_reopen),
		T(store_from_before_sessions_is_migrated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
