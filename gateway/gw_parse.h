/*
 * gateway request parsing: pure functions over untrusted bytes (no I/O, no globals), fuzzed by
 * tests/fuzz/fuzz_gw_body.c and fuzz_gw_auth.c.
 *
 * The gateway passes request bodies through untouched; it only reads the few fields it needs to
 * route, authorise and rate-limit a request. Everything here is thread-safe.
 */
#ifndef GW_PARSE_H
#define GW_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define GW_MODEL_MAX 200 /* same bound as the key store's model names */

/* Where a parse failed: the field ("model", "stream", ...; "" for the body itself) and why. */
struct gw_perr {
	char param[32];
	char msg[160];
};

/* What the gateway reads from an OpenAI request body. */
struct gw_body_info {
	char model[GW_MODEL_MAX + 1]; /* NUL-terminated, valid UTF-8, no control characters */
	size_t model_len;
	int stream;           /* "stream": true */
	int64_t max_tokens;   /* "max_tokens" or "max_completion_tokens"; 0 when absent */
	int include_usage;    /* "stream_options": {"include_usage": true} */
	int64_t prompt_estimate; /* tokens the prompt may hold: bytes / 4, at least 1 */
};

enum gw_parse_rc {
	GW_PARSE_OK = 0,
	GW_PARSE_EJSON = -1,  /* not a JSON object (syntax, invalid UTF-8, not an object) */
	GW_PARSE_EFIELD = -2, /* a field has the wrong type or value */
	GW_PARSE_ENOMEM = -3
};

/*
 * Parse a request body. require_model: a missing "model" is an error (every inference route).
 * Returns GW_PARSE_OK and fills *out, or an error with *err (optional) naming the field.
 */
int gw_body_parse(const char *body, size_t len, int require_model, struct gw_body_info *out,
		  struct gw_perr *err);

enum gw_auth_rc {
	GW_AUTH_OK = 0,
	GW_AUTH_MISSING = -1,   /* neither header present (or both empty) */
	GW_AUTH_MALFORMED = -2  /* a header is present but is not "Bearer <token>" / a token */
};

/*
 * Find the presented API key: "Authorization: Bearer <key>" (scheme case-insensitive) or
 * "x-api-key: <key>". Either header may be NULL (absent). On GW_AUTH_OK, *key and *key_len
 * borrow from the header it came from. Authorization wins when both are present.
 * The token is not checked against the key format here (ks_key_check_format does that).
 */
int gw_auth_parse(const char *authorization, const char *x_api_key, const char **key,
		  size_t *key_len);

/* Whether a client-supplied x-request-id may be echoed and logged: 1..64 bytes of
 * [A-Za-z0-9._:-]. */
int gw_request_id_sane(const char *s, size_t len);

/* Write a fresh 26-character request id (random, lowercase hex with a "req_" prefix) and a NUL. */
void gw_request_id_new(char out[32]);

#endif
