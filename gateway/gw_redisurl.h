/*
 * Redis URL parsing, pure (no I/O, no allocation), fuzzed by tests/fuzz/fuzz_gw_redisurl.c.
 *
 * Accepted forms:
 *   redis://[[user][:password]@]host[:port][/db]      host: name, IPv4, or [IPv6]; port 6379
 *   unix:///absolute/path[?db=N][&password=P]         (parameters in any order, each at most once)
 * user and password may be percent-encoded (%3A for ':', %40 for '@'). db is 0..999999.
 * Anything else is refused with the offset of the first offending byte: "rediss://" (TLS is not
 * supported by hiredis 0.14), a missing host, a bad port, control characters or NUL bytes.
 *
 * Thread-safety: pure and reentrant.
 */
#ifndef GW_REDISURL_H
#define GW_REDISURL_H

#include <stddef.h>

#define GW_REDISURL_HOST_MAX 255
#define GW_REDISURL_PATH_MAX 107 /* sun_path holds 108 bytes with the NUL */
#define GW_REDISURL_CRED_MAX 255

struct gw_redis_url {
	int is_unix;                             /* 1: unix socket at path; 0: TCP host:port */
	char host[GW_REDISURL_HOST_MAX + 1];     /* TCP: without the brackets of an IPv6 literal */
	int port;                                /* TCP: 1..65535 */
	char path[GW_REDISURL_PATH_MAX + 1];     /* unix: absolute path */
	int db;                                  /* SELECT db; 0 by default */
	char username[GW_REDISURL_CRED_MAX + 1]; /* decoded; "" when none (hiredis 0.14 AUTH
	                                            takes only a password) */
	char password[GW_REDISURL_CRED_MAX + 1]; /* decoded; "" when none */
};

/* Where and why a URL was refused (in the manner of jansson's json_error_t). */
struct gw_redisurl_err {
	size_t offset;   /* byte offset of the problem in the input */
	const char *msg; /* static, lowercase, no secret */
};

/*
 * Parse s[0..len) (need not be NUL-terminated). Returns 0 and fills *out, or -1 and fills *err
 * (optional). *out is zeroed first; on failure it may hold a partial parse (wipe it: it can
 * contain a password).
 */
int gw_redisurl_parse(const char *s, size_t len, struct gw_redis_url *out,
                      struct gw_redisurl_err *err);

/*
 * Format u back to a URL that gw_redisurl_parse reads to the same value (credentials
 * percent-encoded); with redact, the password appears as "***" instead. Returns the length
 * written (excluding the NUL), or -1 when cap is too small (buf then holds "").
 */
int gw_redisurl_format(const struct gw_redis_url *u, int redact, char *buf, size_t cap);

#endif
