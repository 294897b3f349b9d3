/*
 * router-core Go-compatible JSON writer: the canonical bytes that MOR-RPC signatures cover.
 *
 * A MOR-RPC signature is over what Go's json.Marshal produces for a struct (morpheus-protocol
 * §2.3), so the writer reproduces Go's encoder byte for byte: keys in the order the caller writes
 * them (struct declaration order; never sorted), no whitespace, and Go's string escaping with
 * HTML escaping on:
 *
 *   "  \  -> \"  \\          \b \f \n \r \t -> \b \f \n \r \t
 *   other bytes < 0x20      -> \u00xx (lowercase hex)
 *   <  >  &                 -> \u003c \u003e \u0026
 *   U+2028 U+2029           -> \u2028 \u2029
 *   each byte that does not start a valid UTF-8 sequence (Go's utf8.DecodeRune returning
 *   RuneError with width 1: stray continuation bytes, overlong forms, UTF-8-encoded surrogates,
 *   code points above U+10FFFF, truncated sequences) -> \ufffd
 *   everything else, including '/', DEL and valid non-ASCII UTF-8 -> verbatim
 *
 * Everything here is pure and thread-safe as long as each output buffer is used by one thread.
 */
#ifndef RC_GOJSON_H
#define RC_GOJSON_H

#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_buf.h>
#include <router-core/rc_common.h>

/*
 * Append the n bytes at s, which may be any bytes (NUL and invalid UTF-8 included), to out as a
 * quoted Go JSON string. Returns RC_OK or RC_ENOMEM / RC_ERANGE (out then holds a partial string
 * and should be discarded). s is borrowed for the call.
 */
int rc_gojson_append_string(struct rc_buf *out, const char *s, size_t n);

/*
 * Append the n bytes at s to out as raw (unquoted) valid UTF-8, each byte that does not begin a
 * valid sequence replaced by U+FFFD, as Go does when json.Marshal meets a string. A consumer
 * must clean a message this way before signing it: a provider re-encodes decoded text and
 * would never reproduce the signed bytes of raw invalid UTF-8 (morpheus-protocol §2.3).
 * Returns RC_OK or RC_ENOMEM. s is borrowed for the call.
 */
int rc_gojson_append_valid_utf8(struct rc_buf *out, const char *s, size_t n);

/*
 * Canonical object writer. Calls append to one buffer and carry a sticky error: after the first
 * failure every later call is a no-op and rc_gojson_w_finish() reports it, so a message encoder
 * is a straight list of calls with one check at the end. Keys are NUL-terminated and go through
 * the same escaping as values (for the ASCII field names of the protocol that is a plain copy).
 * Pass key NULL to write a value with no key: the top-level object, or an array-less bare value.
 * Objects nest up to 32 levels. Members are separated by ',' automatically.
 */
struct rc_gojson_w {
	struct rc_buf *out; /* borrowed */
	int rc;             /* first error, RC_OK while all went well */
	unsigned depth;     /* open objects */
	uint32_t used;      /* bit d set: the object at depth d already has a member */
};

/* Start writing into out (appending after its current content). */
void rc_gojson_w_init(struct rc_gojson_w *w, struct rc_buf *out);

/* Open an object: `"key":{` (or `{` when key is NULL). */
void rc_gojson_w_begin(struct rc_gojson_w *w, const char *key);

/* Close the innermost object: `}`. */
void rc_gojson_w_end(struct rc_gojson_w *w);

/* `"key":"<escaped s>"`: a Go string (also used for lib.BigInt, which marshals as a decimal
 * string). */
void rc_gojson_w_str(struct rc_gojson_w *w, const char *key, const char *s, size_t n);

/* `"key":"0x<lowercase hex>"`: lib.HexString, common.Address, common.Hash. Empty gives "0x". */
void rc_gojson_w_hex0x(struct rc_gojson_w *w, const char *key, const uint8_t *b, size_t n);

/* `"key":"<lowercase hex>"` with no prefix: a Go string holding hex.EncodeToString (ECIES blobs).
 */
void rc_gojson_w_hex(struct rc_gojson_w *w, const char *key, const uint8_t *b, size_t n);

/* `"key":<decimal>`: uint64 / uint32. */
void rc_gojson_w_u64(struct rc_gojson_w *w, const char *key, uint64_t v);

/* `"key":<decimal>`: int (e.g. RpcError.code). */
void rc_gojson_w_i64(struct rc_gojson_w *w, const char *key, int64_t v);

/* `"key":<json>` where json is already-encoded JSON copied verbatim (e.g. "null"). */
void rc_gojson_w_raw(struct rc_gojson_w *w, const char *key, const char *json, size_t n);

/* RC_OK if every call succeeded and every object was closed; else the first error (RC_EINVAL
 * for unbalanced or too deep nesting). */
int rc_gojson_w_finish(const struct rc_gojson_w *w);

#endif
