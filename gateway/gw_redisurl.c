/*
 * Redis URL parser (see gw_redisurl.h). Hand-written over a length-carrying slice so fuzzed bytes
 * with NULs or no terminator are safe; every field is bounded by its buffer.
 */
#include "gw_redisurl.h"

#include <stdio.h>
#include <string.h>

struct cur {
	const char *s;
	size_t len, pos;
	struct gw_redisurl_err *err;
};

static int fail(struct cur *c, size_t at, const char *msg)
{
	if (c->err) {
		c->err->offset = at;
		c->err->msg = msg;
	}
	return -1;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static int is_ctl(unsigned char ch)
{
	return ch < 0x20 || ch == 0x7f;
}

/* Percent-decode s[from..to) into dst (cap bytes with the NUL). */
static int decode(struct cur *c, size_t from, size_t to, char *dst, size_t cap, const char *what)
{
	size_t n = 0;
	for (size_t i = from; i < to; i++) {
		unsigned char ch = (unsigned char)c->s[i];
		if (ch == '%') {
			if (i + 2 >= to)
				return fail(c, i, "truncated percent escape");
			int h = hexval(c->s[i + 1]), l = hexval(c->s[i + 2]);
			if (h < 0 || l < 0)
				return fail(c, i, "bad percent escape");
			ch = (unsigned char)(h * 16 + l);
			i += 2;
			if (ch == 0)
				return fail(c, i - 2, "NUL byte in credentials");
		} else if (is_ctl(ch)) {
			return fail(c, i, "control character");
		}
		if (n + 1 >= cap)
			return fail(c, i, what);
		dst[n++] = (char)ch;
	}
	dst[n] = '\0';
	return 0;
}

static int parse_uint(struct cur *c, size_t from, size_t to, long max, long *out, const char *what)
{
	if (from == to)
		return fail(c, from, what);
	long v = 0;
	for (size_t i = from; i < to; i++) {
		char ch = c->s[i];
		if (ch < '0' || ch > '9')
			return fail(c, i, what);
		v = v * 10 + (ch - '0');
		if (v > max)
			return fail(c, from, what);
	}
	*out = v;
	return 0;
}

static int prefix_is(const struct cur *c, const char *p)
{
	size_t n = strlen(p);
	if (c->len < n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = c->s[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		if (ch != p[i])
			return 0;
	}
	return 1;
}

static int find(const struct cur *c, size_t from, size_t to, char ch, size_t *at)
{
	for (size_t i = from; i < to; i++)
		if (c->s[i] == ch) {
			*at = i;
			return 1;
		}
	return 0;
}

static int find_last(const struct cur *c, size_t from, size_t to, char ch, size_t *at)
{
	for (size_t i = to; i > from; i--)
		if (c->s[i - 1] == ch) {
			*at = i - 1;
			return 1;
		}
	return 0;
}

static int is_host_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '.' || ch == '-' || ch == '_';
}

static int parse_tcp(struct cur *c, struct gw_redis_url *u)
{
	size_t p = c->pos, end = c->len, at;
	/* authority ends at the first '/' (the db); '?' and '#' are not accepted */
	size_t auth_end = end;
	for (size_t i = p; i < end; i++) {
		if (c->s[i] == '/') {
			auth_end = i;
			break;
		}
		if (c->s[i] == '?' || c->s[i] == '#')
			return fail(c, i, "unexpected query or fragment");
	}
	/* userinfo: up to the last '@' of the authority (a password may hold an unescaped '@') */
	if (find_last(c, p, auth_end, '@', &at)) {
		size_t colon;
		if (find(c, p, at, ':', &colon)) {
			if (decode(c, p, colon, u->username, sizeof u->username,
			           "username too long") ||
			    decode(c, colon + 1, at, u->password, sizeof u->password,
			           "password too long"))
				return -1;
		} else if (decode(c, p, at, u->username, sizeof u->username, "username too long")) {
			return -1;
		}
		p = at + 1;
	}
	/* host */
	size_t host_end;
	if (p < auth_end && c->s[p] == '[') {
		if (!find(c, p, auth_end, ']', &host_end))
			return fail(c, p, "unterminated IPv6 address");
		if (host_end == p + 1)
			return fail(c, p, "empty host");
		for (size_t i = p + 1; i < host_end; i++) {
			char ch = c->s[i];
			if (!(hexval(ch) >= 0 || ch == ':' || ch == '.'))
				return fail(c, i, "bad character in IPv6 address");
		}
		if (host_end - p - 1 > GW_REDISURL_HOST_MAX)
			return fail(c, p, "host too long");
		memcpy(u->host, c->s + p + 1, host_end - p - 1);
		u->host[host_end - p - 1] = '\0';
		p = host_end + 1;
		if (p < auth_end && c->s[p] != ':')
			return fail(c, p, "unexpected character after IPv6 address");
	} else {
		size_t h = p;
		while (h < auth_end && c->s[h] != ':') {
			if (!is_host_char(c->s[h]))
				return fail(c, h, "bad character in host");
			h++;
		}
		if (h == p)
			return fail(c, p, "missing host");
		if (h - p > GW_REDISURL_HOST_MAX)
			return fail(c, p, "host too long");
		memcpy(u->host, c->s + p, h - p);
		u->host[h - p] = '\0';
		p = h;
	}
	u->port = 6379;
	if (p < auth_end) { /* c->s[p] == ':' */
		long port;
		if (parse_uint(c, p + 1, auth_end, 65535, &port, "bad port") || port == 0)
			return fail(c, p + 1, "bad port");
		u->port = (int)port;
	}
	p = auth_end;
	if (p < end) { /* '/' then an optional db */
		p++;
		if (p < end) {
			long db;
			if (parse_uint(c, p, end, 999999, &db, "bad database number"))
				return -1;
			u->db = (int)db;
		}
	}
	return 0;
}

static int parse_unix(struct cur *c, struct gw_redis_url *u)
{
	size_t p = c->pos, end = c->len, q = end;
	if (p >= end || c->s[p] != '/')
		return fail(c, p, "unix socket path must be absolute");
	find(c, p, end, '?', &q);
	if (q - p > GW_REDISURL_PATH_MAX)
		return fail(c, p, "unix socket path too long");
	for (size_t i = p; i < q; i++) {
		if (is_ctl((unsigned char)c->s[i]) || c->s[i] == '#')
			return fail(c, i, "bad character in unix socket path");
	}
	memcpy(u->path, c->s + p, q - p);
	u->path[q - p] = '\0';
	int seen_db = 0, seen_pw = 0;
	p = q;
	while (p < end) {
		p++; /* '?' or '&' */
		size_t amp = end;
		find(c, p, end, '&', &amp);
		if (amp - p > 3 && memcmp(c->s + p, "db=", 3) == 0 && !seen_db) {
			long db;
			if (parse_uint(c, p + 3, amp, 999999, &db, "bad database number"))
				return -1;
			u->db = (int)db;
			seen_db = 1;
		} else if (amp - p >= 9 && memcmp(c->s + p, "password=", 9) == 0 && !seen_pw) {
			if (decode(c, p + 9, amp, u->password, sizeof u->password,
			           "password too long"))
				return -1;
			seen_pw = 1;
		} else {
			return fail(c, p, "unknown or repeated parameter");
		}
		p = amp;
	}
	return 0;
}

int gw_redisurl_parse(const char *s, size_t len, struct gw_redis_url *out,
                      struct gw_redisurl_err *err)
{
	struct cur c = {s, len, 0, err};
	memset(out, 0, sizeof *out);
	if (!s)
		return fail(&c, 0, "no url");
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\0')
			return fail(&c, i, "NUL byte in url");
	if (prefix_is(&c, "redis://")) {
		c.pos = 8;
		return parse_tcp(&c, out);
	}
	if (prefix_is(&c, "unix://")) {
		c.pos = 7;
		out->is_unix = 1;
		return parse_unix(&c, out);
	}
	if (prefix_is(&c, "rediss://"))
		return fail(&c, 0, "TLS (rediss://) is not supported");
	return fail(&c, 0, "url must start with redis:// or unix://");
}

struct out {
	char *buf;
	size_t cap, len;
	int overflow;
};

static void put(struct out *o, const char *p, size_t n)
{
	if (o->overflow || o->len + n + 1 > o->cap) {
		o->overflow = 1;
		return;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void put_s(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_enc(struct out *o, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			put(o, s, 1);
		} else {
			char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
			put(o, e, 3);
		}
	}
}

int gw_redisurl_format(const struct gw_redis_url *u, int redact, char *buf, size_t cap)
{
	struct out o = {buf, cap, 0, cap == 0};
	char num[32];
	if (cap)
		buf[0] = '\0';
	if (u->is_unix) {
		put_s(&o, "unix://");
		put_s(&o, u->path);
		char sep = '?';
		if (u->db) {
			snprintf(num, sizeof num, "%cdb=%d", sep, u->db);
			put_s(&o, num);
			sep = '&';
		}
		if (u->password[0]) {
			put(&o, &sep, 1);
			put_s(&o, "password=");
			if (redact)
				put_s(&o, "***");
			else
				put_enc(&o, u->password);
		}
	} else {
		put_s(&o, "redis://");
		if (u->username[0] || u->password[0]) {
			put_enc(&o, u->username);
			if (u->password[0]) {
				put_s(&o, ":");
				if (redact)
					put_s(&o, "***");
				else
					put_enc(&o, u->password);
			}
			put_s(&o, "@");
		}
		if (strchr(u->host, ':')) {
			put_s(&o, "[");
			put_s(&o, u->host);
			put_s(&o, "]");
		} else {
			put_s(&o, u->host);
		}
		snprintf(num, sizeof num, ":%d/%d", u->port, u->db);
		put_s(&o, num);
	}
	if (o.overflow) {
		if (cap)
			buf[0] = '\0';
		return -1;
	}
	return (int)o.len;
}
