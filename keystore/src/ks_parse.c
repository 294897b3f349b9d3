/*
 * Pure validation and parsing shared by the store and the CLI: names, labels, limits, durations,
 * dates; and the error vocabulary. Every refusal says what was wrong, in git's message style.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ks_internal.h"

const char *ks_strerror(int rc)
{
	switch (rc) {
	case KS_OK: return "ok";
	case KS_ENOMEM: return "out of memory";
	case KS_EINVAL: return "invalid argument";
	case KS_ENOTFOUND: return "not found";
	case KS_ECONFLICT: return "conflict";
	case KS_ESTORE: return "key store error";
	case KS_EBUSY: return "key store is locked";
	case KS_ENOSTORE: return "no key store";
	case KS_ESCHEMA_NEWER: return "key store schema is newer than this binary";
	case KS_ESCHEMA_OLDER: return "key store schema needs migrating";
	case KS_ECORRUPT: return "key store is damaged";
	case KS_EPEPPER: return "pepper file problem";
	case KS_EREADONLY: return "key store is read-only";
	case KS_EMALFORMED: return "malformed API key";
	case KS_EUNKNOWN: return "unknown API key";
	case KS_EREVOKED: return "revoked API key";
	case KS_EEXPIRED: return "expired API key";
	case KS_ETENANT_DISABLED: return "tenant disabled";
	}
	return "unknown error";
}

void ks_set_err(struct ks_err *err, const char *fmt, ...)
{
	if (!err)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
}

int ks_validate_tenant_name(const char *name, struct ks_err *err)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > KS_NAME_MAX) {
		ks_set_err(err, "tenant name must be 1 to %d characters", KS_NAME_MAX);
		return KS_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		if (!alnum && (i == 0 || (c != '-' && c != '_' && c != '.'))) {
			ks_set_err(err,
				   "tenant name may use only letters, digits, '-', '_' and '.', "
				   "and must start with a letter or digit (bad byte 0x%02x at %zu)",
				   c, i);
			return KS_EINVAL;
		}
	}
	return KS_OK;
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF) without C0/C1 controls or
 * DEL: a label is shown in terminals and must not carry escape sequences. */
static int printable_utf8(const char *s, size_t n, size_t *bad_at)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		unsigned c = p[i];
		size_t len;
		unsigned cp;
		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				goto bad;
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			len = 2, cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3, cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4, cp = c & 0x07;
		} else {
			goto bad;
		}
		if (i + len > n)
			goto bad;
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				goto bad;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
			goto bad;
		i += len;
		continue;
	bad:
		*bad_at = i;
		return 0;
	}
	return 1;
}

int ks_validate_label(const char *label, struct ks_err *err)
{
	size_t n = label ? strlen(label) : 0, at;
	if (n == 0 || n > KS_LABEL_MAX) {
		ks_set_err(err, "key name must be 1 to %d bytes", KS_LABEL_MAX);
		return KS_EINVAL;
	}
	if (!printable_utf8(label, n, &at)) {
		ks_set_err(err, "key name has a control character or invalid UTF-8 at byte %zu", at);
		return KS_EINVAL;
	}
	return KS_OK;
}

int ks_validate_reason(const char *reason, struct ks_err *err)
{
	size_t n = reason ? strlen(reason) : 0, at;
	if (n > KS_REASON_MAX) {
		ks_set_err(err, "revoke reason must be at most %d bytes", KS_REASON_MAX);
		return KS_EINVAL;
	}
	if (n && !printable_utf8(reason, n, &at)) {
		ks_set_err(err, "revoke reason has a control character or invalid UTF-8 at byte %zu", at);
		return KS_EINVAL;
	}
	return KS_OK;
}

int ks_validate_models(const char *models, struct ks_err *err)
{
	size_t n = strlen(models), at;
	if (n > KS_MODELS_MAX) {
		ks_set_err(err, "model list must be at most %d bytes", KS_MODELS_MAX);
		return KS_EINVAL;
	}
	if (!printable_utf8(models, n, &at)) {
		ks_set_err(err, "model list has a control character or invalid UTF-8 at byte %zu", at);
		return KS_EINVAL;
	}
	const char *p = models;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == 0 || len > KS_MODEL_MAX) {
			ks_set_err(err, "model list has an empty or over-long name at byte %zu",
				   (size_t)(p - models));
			return KS_EINVAL;
		}
		if (p[0] == ' ' || p[len - 1] == ' ') {
			ks_set_err(err, "model names must not start or end with a space");
			return KS_EINVAL;
		}
		if (!comma)
			break;
		p = comma + 1;
	}
	return KS_OK;
}

int ks_validate_limits(const struct ks_limits *l, unsigned mask, struct ks_err *err)
{
	static const struct {
		unsigned bit;
		size_t off;
		const char *name;
		int64_t max;
	} dims[] = {
		{KS_LIM_RPM, offsetof(struct ks_limits, rpm), "rpm", KS_MAX_RPM},
		{KS_LIM_TPM, offsetof(struct ks_limits, tpm), "tpm", KS_MAX_TPM},
		{KS_LIM_CONCURRENCY, offsetof(struct ks_limits, concurrency), "concurrency",
		 KS_MAX_CONCURRENCY},
		{KS_LIM_MONTHLY, offsetof(struct ks_limits, monthly_tokens), "monthly-tokens",
		 KS_MAX_MONTHLY_TOKENS},
	};
	for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
		if (!(mask & dims[i].bit))
			continue;
		int64_t v;
		memcpy(&v, (const char *)l + dims[i].off, sizeof v);
		if (v < 0 || v > dims[i].max) {
			ks_set_err(err, "%s must be between 1 and %lld, or 'none'", dims[i].name,
				   (long long)dims[i].max);
			return KS_EINVAL;
		}
	}
	return KS_OK;
}

int ks_parse_duration(const char *s, int64_t *secs, struct ks_err *err)
{
	const int64_t max = 100LL * 366 * 86400;
	int64_t v = 0;
	const char *p = s;
	if (!s || *s < '0' || *s > '9')
		goto bad;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (*p++ - '0');
		if (v > max)
			goto bad;
	}
	int64_t unit;
	switch (*p++) {
	case 's': unit = 1; break;
	case 'm': unit = 60; break;
	case 'h': unit = 3600; break;
	case 'd': unit = 86400; break;
	case 'w': unit = 7 * 86400; break;
	default: goto bad;
	}
	if (*p != '\0' || v == 0 || v > max / unit)
		goto bad;
	*secs = v * unit;
	return KS_OK;
bad:
	ks_set_err(err, "bad duration '%.40s': use a positive number with s, m, h, d or w "
		   "(e.g. 30d), at most 100 years", s ? s : "");
	return KS_EINVAL;
}

static int digits(const char *p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const int64_t yoe = y - era * 400;
	const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int ks_parse_date(const char *s, int64_t *unix_secs, struct ks_err *err)
{
	int y, mo, d, h = 0, mi = 0, se = 0;
	size_t n = s ? strlen(s) : 0;
	if (n != 10 && n != 20)
		goto bad;
	if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
	    !digits(s + 8, 2, &d))
		goto bad;
	if (n == 20 && (s[10] != 'T' || !digits(s + 11, 2, &h) || s[13] != ':' ||
			!digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se) ||
			s[19] != 'Z'))
		goto bad;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || se > 59)
		goto bad;
	*unix_secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
	return KS_OK;
bad:
	ks_set_err(err, "bad date '%.40s': use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)",
		   s ? s : "");
	return KS_EINVAL;
}

void ks_format_time(int64_t t, char buf[32])
{
	if (t <= 0) {
		memcpy(buf, "-", 2);
		return;
	}
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

const char *ks_key_status_name(enum ks_key_status s)
{
	switch (s) {
	case KS_KEY_ACTIVE: return "active";
	case KS_KEY_REVOKED: return "revoked";
	case KS_KEY_EXPIRED: return "expired";
	}
	return "unknown";
}
