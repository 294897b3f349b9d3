/*
 * router-core streaming splitter for back-to-back JSON values on one connection.
 *
 * MOR-RPC peers write JSON values one after another with no delimiter (Go's json.Marshal output
 * written straight to the socket), and Go's decoder also tolerates whitespace between them
 * (morpheus-protocol §2.1). A read may end anywhere, in the middle of a string escape or a
 * number. rc_jsonstream takes the bytes as they arrive and hands back each complete top-level
 * value as a byte range, after checking the full JSON grammar (RFC 8259, the grammar of Go's
 * scanner) so that garbage is reported where it starts instead of when a later parse fails.
 * Parse the range with jansson (or rc_morrpc) afterwards.
 *
 * Guarantees:
 *   - O(n) in the bytes fed: each byte is examined once, whatever the split.
 *   - Memory is bounded: a value longer than max_value bytes, or nested deeper than max_depth,
 *     is an error, never growth. Only the part of a value that straddles feeds is copied.
 *   - Whitespace (space, \t, \r, \n) between values is skipped; any other byte outside a value
 *     that cannot start one is an error. Inside strings, control bytes < 0x20 are errors (as in
 *     Go), bytes >= 0x80 pass through (UTF-8 validity is the value parser's job).
 *   - Objects, arrays, strings, true/false/null end at their last byte. A top-level number can
 *     only end at the next byte that is not part of it, or at rc_jsonstream_end().
 *   - Errors are sticky: after one, every call returns the same code.
 *
 * Lifecycle: caller-allocated, rc_jsonstream_init() ... rc_jsonstream_release(); one stream per
 * connection; not thread-safe (one thread at a time).
 */
#ifndef RC_JSONSTREAM_H
#define RC_JSONSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_buf.h>
#include <router-core/rc_common.h>

/* Hard ceiling on max_depth (the nesting stack is a fixed bitmap). */
#define RC_JSONSTREAM_DEPTH_LIMIT 1024

struct rc_jsonstream {
	/* private */
	struct rc_buf part; /* bytes of a value that started in an earlier feed */
	size_t max_value;   /* longest value accepted, in bytes */
	size_t vlen;        /* bytes of the current value seen so far */
	uint64_t offset;    /* stream offset of the next byte to examine */
	unsigned max_depth;
	unsigned depth;
	int state;
	int err;         /* sticky error, RC_OK while healthy */
	uint8_t lit_pos; /* position inside true/false/null */
	uint8_t lit_which;
	uint8_t returned; /* the last call handed out `part` */
	uint8_t str_key;  /* the string being scanned is an object key */
	uint64_t kinds[RC_JSONSTREAM_DEPTH_LIMIT / 64]; /* bit d: level d is an object */
	struct rc_errinfo errinfo;
};

/*
 * Prepare *js. max_value: longest value accepted, >= 1. max_depth: deepest nesting accepted,
 * 1..RC_JSONSTREAM_DEPTH_LIMIT (a flat object is depth 1). Returns RC_OK or RC_EINVAL.
 * Allocates nothing until a value straddles two feeds.
 */
int rc_jsonstream_init(struct rc_jsonstream *js, size_t max_value, unsigned max_depth);

/* Free the internal buffer. NULL or a released stream is fine. */
void rc_jsonstream_release(struct rc_jsonstream *js);

/*
 * Examine bytes from data[0..len), stopping right after the first top-level value that completes.
 *
 * *consumed gets the number of bytes used (all of len unless a value completed early); call
 * again with the rest. *value gets the complete value when one ended ({NULL, 0} otherwise); it
 * points either into data or into the stream's own buffer and is valid until the next call on js
 * or until data is freed, whichever comes first. Leading/trailing whitespace is not part of it.
 *
 * Returns RC_OK, RC_EPARSE (not JSON: *err, if non-NULL, gets the stream offset of the bad byte
 * and a Go-style text such as "invalid character 'x' looking for beginning of value"), RC_ERANGE
 * (value longer than max_value or nested deeper than max_depth), RC_ENOMEM, or RC_EINVAL (NULL
 * arguments). On error *consumed says how far examination got.
 */
int rc_jsonstream_feed(struct rc_jsonstream *js, const char *data, size_t len, size_t *consumed,
                       struct rc_str *value, struct rc_errinfo *err);

/*
 * The peer closed the stream. If a top-level number was pending, it is complete now and goes to
 * *value; if nothing was pending, *value is {NULL, 0} and RC_OK is returned. A value cut short
 * gives RC_ETRUNC ("unexpected end of JSON input"). The stream is spent afterwards.
 */
int rc_jsonstream_end(struct rc_jsonstream *js, struct rc_str *value, struct rc_errinfo *err);

/* Total bytes examined so far (the stream offset of the next byte). */
uint64_t rc_jsonstream_offset(const struct rc_jsonstream *js);

#endif
