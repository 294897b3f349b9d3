/* keystore validation and parsing: names, labels, model lists, limits, durations, dates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../../keystore/src/ks_internal.h"

static void test_ks_parse__durations(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int64_t secs;
	} good[] = {{"1s", 1}, {"45s", 45}, {"90m", 5400}, {"24h", 86400}, {"30d", 2592000},
		    {"2w", 1209600}, {"36600d", 36600LL * 86400}};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		int64_t s = -1;
		assert_int_equal(ks_parse_duration(good[i].in, &s, NULL), KS_OK);
		assert_int_equal(s, good[i].secs);
	}
	static const char *const bad[] = {"", "0d", "d", "30", "30x", "-1d", "1.5h", "30dd", " 30d",
					  "30d ", "99999999999999999999s", "36700d", "5300w", NULL};
	for (int i = 0; bad[i]; i++) {
		struct ks_err err = {{0}};
		int64_t s = -1;
		assert_int_equal(ks_parse_duration(bad[i], &s, &err), KS_EINVAL);
		assert_int_equal(s, -1);
		assert_non_null(strstr(err.msg, "bad duration"));
	}
	assert_int_equal(ks_parse_duration(NULL, &(int64_t){0}, NULL), KS_EINVAL);
}

static void test_ks_parse__dates(void **state)
{
	(void)state;
	int64_t t;
	assert_int_equal(ks_parse_date("1970-01-01", &t, NULL), KS_OK);
	assert_int_equal(t, 0);
	assert_int_equal(ks_parse_date("2027-01-31", &t, NULL), KS_OK);
	assert_int_equal(t, 1801353600); /* date -u -d 2027-01-31 +%s */
	assert_int_equal(ks_parse_date("2028-02-29T23:59:59Z", &t, NULL), KS_OK);
	assert_int_equal(t, 1835481599);
	assert_int_equal(ks_parse_date("2000-02-29", &t, NULL), KS_OK);
	char buf[32];
	ks_format_time(1835481599, buf);
	assert_string_equal(buf, "2028-02-29T23:59:59Z");
	ks_format_time(0, buf);
	assert_string_equal(buf, "-");
	static const char *const bad[] = {"2027-02-29", "2100-02-29", "2027-13-01", "2027-00-10",
					  "2027-04-31", "1969-12-31", "2027-1-01", "2027-01-31T",
					  "2027-01-31T24:00:00Z", "2027-01-31T12:00:00",
					  "2027-01-31 12:00:00Z", "27-01-31", "２０２７-01-31", "", NULL};
	for (int i = 0; bad[i]; i++) {
		struct ks_err err = {{0}};
		assert_int_equal(ks_parse_date(bad[i], &t, &err), KS_EINVAL);
		assert_non_null(strstr(err.msg, "bad date"));
	}
}

static void test_ks_parse__tenant_names(void **state)
{
	(void)state;
	static const char *const good[] = {"acme", "A", "acme-corp_2.eu", "0day", NULL};
	for (int i = 0; good[i]; i++)
		assert_int_equal(ks_validate_tenant_name(good[i], NULL), KS_OK);
	char long_name[KS_NAME_MAX + 2];
	memset(long_name, 'a', sizeof long_name);
	long_name[KS_NAME_MAX + 1] = '\0';
	static const char *const bad[] = {"", "-acme", ".acme", "ac me", "acme\n", "acme\x1b[31m",
					  "ac/me", "acmé", "acme;drop", NULL};
	for (int i = 0; bad[i]; i++)
		assert_int_equal(ks_validate_tenant_name(bad[i], NULL), KS_EINVAL);
	assert_int_equal(ks_validate_tenant_name(long_name, NULL), KS_EINVAL);
	long_name[KS_NAME_MAX] = '\0';
	assert_int_equal(ks_validate_tenant_name(long_name, NULL), KS_OK);
	assert_int_equal(ks_validate_tenant_name(NULL, NULL), KS_EINVAL);
}

static void test_ks_parse__labels_reject_controls_and_bad_utf8(void **state)
{
	(void)state;
	static const char *const good[] = {"ci bot", "Zoë's laptop", "日本語", "emoji 🚀", NULL};
	for (int i = 0; good[i]; i++)
		assert_int_equal(ks_validate_label(good[i], NULL), KS_OK);
	static const char *const bad[] = {
		"",             "tab\there",     "nl\n",          "esc\x1b[2J", "del\x7f",
		"c1 \xc2\x9b",  "lone \x80",     "trunc \xe6\x97", "overlong \xc0\xaf",
		"overlong3 \xe0\x80\xaf",        "surrogate \xed\xa0\x80", "too big \xf4\x90\x80\x80",
		"\xff",         NULL};
	for (int i = 0; bad[i]; i++) {
		struct ks_err err = {{0}};
		assert_int_equal(ks_validate_label(bad[i], &err), KS_EINVAL);
		assert_true(err.msg[0] != '\0');
	}
	char big[KS_LABEL_MAX + 2];
	memset(big, 'x', sizeof big);
	big[KS_LABEL_MAX + 1] = '\0';
	assert_int_equal(ks_validate_label(big, NULL), KS_EINVAL);
}

static void test_ks_parse__model_lists(void **state)
{
	(void)state;
	assert_int_equal(ks_validate_models("llama-3.3-70b", NULL), KS_OK);
	assert_int_equal(ks_validate_models("a,b,mistral:7b-instruct", NULL), KS_OK);
	static const char *const bad[] = {"a,,b", ",a", "a,", " a", "a ,b", "a\nb", NULL};
	for (int i = 0; bad[i]; i++)
		assert_int_equal(ks_validate_models(bad[i], NULL), KS_EINVAL);
	char big[KS_MODELS_MAX + 2];
	memset(big, 'm', sizeof big);
	big[KS_MODELS_MAX + 1] = '\0';
	assert_int_equal(ks_validate_models(big, NULL), KS_EINVAL);
}

static void test_ks_parse__limits(void **state)
{
	(void)state;
	struct ks_limits l = {KS_MAX_RPM, KS_MAX_TPM, KS_MAX_CONCURRENCY, KS_MAX_MONTHLY_TOKENS};
	assert_int_equal(ks_validate_limits(&l, ~0u, NULL), KS_OK);
	l.rpm = KS_MAX_RPM + 1;
	struct ks_err err = {{0}};
	assert_int_equal(ks_validate_limits(&l, ~0u, &err), KS_EINVAL);
	assert_non_null(strstr(err.msg, "rpm"));
	assert_int_equal(ks_validate_limits(&l, KS_LIM_TPM, NULL), KS_OK); /* rpm not in mask */
	l.rpm = -1;
	assert_int_equal(ks_validate_limits(&l, KS_LIM_RPM, NULL), KS_EINVAL);
	l.rpm = 0; /* "none" */
	assert_int_equal(ks_validate_limits(&l, KS_LIM_RPM, NULL), KS_OK);
}

static void test_ks_parse__every_code_has_a_distinct_name(void **state)
{
	(void)state;
	static const int codes[] = {KS_OK, KS_ENOMEM, KS_EINVAL, KS_ENOTFOUND, KS_ECONFLICT,
				    KS_ESTORE, KS_EBUSY, KS_ENOSTORE, KS_ESCHEMA_NEWER,
				    KS_ESCHEMA_OLDER, KS_ECORRUPT, KS_EPEPPER, KS_EREADONLY,
				    KS_EMALFORMED, KS_EUNKNOWN, KS_EREVOKED, KS_EEXPIRED,
				    KS_ETENANT_DISABLED};
	size_t n = sizeof codes / sizeof codes[0];
	for (size_t i = 0; i < n; i++) {
		assert_string_not_equal(ks_strerror(codes[i]), "unknown error");
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(ks_strerror(codes[i]), ks_strerror(codes[j]));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ks_parse__durations),
		cmocka_unit_test(test_ks_parse__dates),
		cmocka_unit_test(test_ks_parse__tenant_names),
		cmocka_unit_test(test_ks_parse__labels_reject_controls_and_bad_utf8),
		cmocka_unit_test(test_ks_parse__model_lists),
		cmocka_unit_test(test_ks_parse__limits),
		cmocka_unit_test(test_ks_parse__every_code_has_a_distinct_name),
	};
	return cmocka_run_group_tests_name("ks_parse", tests, NULL, NULL);
}
