/*
 * Incremental splitter for concatenated JSON values (morpheus-protocol §2.1 framing).
 *
 * Why a state machine and not "buffer until jansson accepts it": a response may arrive in many
 * reads, and re-parsing the growing prefix after each one is quadratic; counting braces alone
 * gets strings like "}\"{" wrong. The machine below is a byte-at-a-time transcription of Go's
 * encoding/json scanner (the reference reader is json.Decoder), so it accepts exactly the values
 * a Go peer would and reports the first bad byte with Go's wording. Its whole state is a few
 * integers plus a one-bit-per-level stack (object or array), which is why a split at any byte is
 * free: the next feed simply continues in the saved state.
 *
 * Copying: a value that starts and ends inside one feed is returned in place (zero copy); only
 * a value that straddles feeds is gathered in `part`, never beyond max_value bytes.
 */
#include <stdio.h>
#include <string.h>

#include <router-core/rc_jsonstream.h>

enum {
	ST_TOP,       /* between top-level values */
	ST_VALUE,     /* a value must start (after ':' or ',' in an array) */
	ST_ARR_FIRST, /* after '[': a value or ']' */
	ST_OBJ_FIRST, /* after '{': a key or '}' */
	ST_OBJ_KEY,   /* after ',' in an object: a key */
	ST_COLON,     /* after a key */
	ST_AFTER,     /* after a value inside a container: ',' or the closer */
	ST_STR,
	ST_STR_ESC,
	ST_STR_U, /* lit_pos counts the hex digits of \uXXXX */
	ST_NUM_MINUS,
	ST_NUM_ZERO,
	ST_NUM_INT,
	ST_NUM_DOT,
	ST_NUM_FRAC,
	ST_NUM_E,
	ST_NUM_ESIGN,
	ST_NUM_EXP,
	ST_LIT, /* true / false / null: lit_which, lit_pos */
	ST_ENDED,
};

static const char *const literals[3] = {"true", "false", "null"};

static int is_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static int is_hex(uint8_t c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Record and return a sticky error. `what` follows Go's scanner messages. */
static int fail(struct rc_jsonstream *js, int rc, uint64_t off, uint8_t c, const char *what)
{
	char ch[8];
	if (c == '\'')
		memcpy(ch, "'\\''", 5);
	else if (c >= 0x20 && c < 0x7f)
		snprintf(ch, sizeof ch, "'%c'", c);
	else
		snprintf(ch, sizeof ch, "'\\x%02x'", c);
	js->err = rc;
	js->errinfo.offset = (size_t)off;
	snprintf(js->errinfo.text, sizeof js->errinfo.text, "invalid character %s %s", ch, what);
	return rc;
}

static int fail_text(struct rc_jsonstream *js, int rc, uint64_t off, const char *text)
{
	js->err = rc;
	js->errinfo.offset = (size_t)off;
	snprintf(js->errinfo.text, sizeof js->errinfo.text, "%s", text);
	return rc;
}

int rc_jsonstream_init(struct rc_jsonstream *js, size_t max_value, unsigned max_depth)
{
	if (!js || max_value == 0 || max_value > SIZE_MAX / 2 || max_depth == 0 ||
	    max_depth > RC_JSONSTREAM_DEPTH_LIMIT)
		return RC_EINVAL;
	memset(js, 0, sizeof *js);
	rc_buf_init(&js->part);
	js->max_value = max_value;
	js->max_depth = max_depth;
	js->state = ST_TOP;
	return RC_OK;
}

void rc_jsonstream_release(struct rc_jsonstream *js)
{
	if (js)
		rc_buf_release(&js->part);
}

uint64_t rc_jsonstream_offset(const struct rc_jsonstream *js)
{
	return js->offset;
}

static int top_is_object(const struct rc_jsonstream *js)
{
	unsigned d = js->depth - 1;
	return (int)((js->kinds[d / 64] >> (d % 64)) & 1);
}

/* Enter the state for a value starting with c; RC_OK or an error. */
static int begin_value(struct rc_jsonstream *js, uint8_t c, uint64_t off)
{
	switch (c) {
	case '{':
	case '[':
		if (js->depth >= js->max_depth) {
			char t[64];
			snprintf(t, sizeof t, "exceeded max depth %u", js->max_depth);
			return fail_text(js, RC_ERANGE, off, t);
		}
		if (c == '{')
			js->kinds[js->depth / 64] |= (uint64_t)1 << (js->depth % 64);
		else
			js->kinds[js->depth / 64] &= ~((uint64_t)1 << (js->depth % 64));
		js->depth++;
		js->state = c == '{' ? ST_OBJ_FIRST : ST_ARR_FIRST;
		return RC_OK;
	case '"':
		js->str_key = 0;
		js->state = ST_STR;
		return RC_OK;
	case '-':
		js->state = ST_NUM_MINUS;
		return RC_OK;
	case '0':
		js->state = ST_NUM_ZERO;
		return RC_OK;
	case 't':
	case 'f':
	case 'n':
		js->lit_which = c == 't' ? 0 : c == 'f' ? 1 : 2;
		js->lit_pos = 1;
		js->state = ST_LIT;
		return RC_OK;
	default:
		if (c >= '1' && c <= '9') {
			js->state = ST_NUM_INT;
			return RC_OK;
		}
		return fail(js, RC_EPARSE, off, c, "looking for beginning of value");
	}
}

/* A value just ended: returns 1 when it was the top-level one. */
static int end_value(struct rc_jsonstream *js)
{
	if (js->depth == 0) {
		js->state = ST_TOP;
		return 1;
	}
	js->state = ST_AFTER;
	return 0;
}

int rc_jsonstream_feed(struct rc_jsonstream *js, const char *data, size_t len, size_t *consumed,
                       struct rc_str *value, struct rc_errinfo *err)
{
	if (!js || (!data && len) || !consumed || !value)
		return RC_EINVAL;
	*consumed = 0;
	*value = (struct rc_str){NULL, 0};
	if (js->state == ST_ENDED && !js->err)
		fail_text(js, RC_EINVAL, js->offset, "stream already ended");
	if (js->err) {
		if (err)
			*err = js->errinfo;
		return js->err;
	}
	if (js->returned) {
		rc_buf_reset(&js->part);
		js->returned = 0;
	}

	const uint8_t *p = (const uint8_t *)data;
	const uint64_t base = js->offset;
	int in_value = js->state != ST_TOP;
	/* Scan at most one byte past the size limit: enough to see a top-level number end. */
	size_t vstart = 0, vend = 0, i = 0, n = len;
	if (in_value && len > js->max_value - js->vlen)
		n = js->max_value - js->vlen + 1;
	int rc = RC_OK, done = 0;

	while (i < n && !done) {
		uint8_t c = p[i];
		switch (js->state) {
		case ST_TOP:
			if (is_ws(c)) {
				i++;
				break;
			}
			vstart = i;
			in_value = 1;
			js->vlen = 0;
			if (len - i > js->max_value)
				n = i + js->max_value + 1;
			if ((rc = begin_value(js, c, base + i)) != RC_OK)
				goto out;
			i++;
			break;
		case ST_VALUE:
			if (!is_ws(c) && (rc = begin_value(js, c, base + i)) != RC_OK)
				goto out;
			i++;
			break;
		case ST_ARR_FIRST:
			if (is_ws(c)) {
				i++;
			} else if (c == ']') {
				js->depth--;
				done = end_value(js);
				vend = ++i;
			} else {
				if ((rc = begin_value(js, c, base + i)) != RC_OK)
					goto out;
				i++;
			}
			break;
		case ST_OBJ_FIRST:
		case ST_OBJ_KEY:
			if (is_ws(c)) {
				i++;
			} else if (c == '"') {
				js->str_key = 1;
				js->state = ST_STR;
				i++;
			} else if (c == '}' && js->state == ST_OBJ_FIRST) {
				js->depth--;
				done = end_value(js);
				vend = ++i;
			} else {
				rc = fail(js, RC_EPARSE, base + i, c,
				          "looking for beginning of object key string");
				goto out;
			}
			break;
		case ST_COLON:
			if (c == ':') {
				js->state = ST_VALUE;
			} else if (!is_ws(c)) {
				rc = fail(js, RC_EPARSE, base + i, c, "after object key");
				goto out;
			}
			i++;
			break;
		case ST_AFTER: {
			int obj = top_is_object(js);
			if (is_ws(c)) {
				i++;
			} else if (c == ',') {
				js->state = obj ? ST_OBJ_KEY : ST_VALUE;
				i++;
			} else if (c == (obj ? '}' : ']')) {
				js->depth--;
				done = end_value(js);
				vend = ++i;
			} else {
				rc = fail(js, RC_EPARSE, base + i, c,
				          obj ? "after object key:value pair"
				              : "after array element");
				goto out;
			}
			break;
		}
		case ST_STR:
			/* Hot loop: hex payloads and text are long runs of plain bytes. */
			while (i < n && p[i] >= 0x20 && p[i] != '"' && p[i] != '\\')
				i++;
			if (i == n)
				break;
			c = p[i];
			if (c == '"') {
				if (js->str_key) {
					js->state = ST_COLON;
				} else {
					done = end_value(js);
					vend = i + 1;
				}
			} else if (c == '\\') {
				js->state = ST_STR_ESC;
			} else {
				rc = fail(js, RC_EPARSE, base + i, c, "in string literal");
				goto out;
			}
			i++;
			break;
		case ST_STR_ESC:
			if (c == 'u') {
				js->state = ST_STR_U;
				js->lit_pos = 0;
			} else if (strchr("\"\\/bfnrt", c) && c) {
				js->state = ST_STR;
			} else {
				rc = fail(js, RC_EPARSE, base + i, c, "in string escape code");
				goto out;
			}
			i++;
			break;
		case ST_STR_U:
			if (!is_hex(c)) {
				rc = fail(js, RC_EPARSE, base + i, c,
				          "in \\u hexadecimal character escape");
				goto out;
			}
			if (++js->lit_pos == 4)
				js->state = ST_STR;
			i++;
			break;
		case ST_LIT: {
			const char *lit = literals[js->lit_which];
			if (c != (uint8_t)lit[js->lit_pos]) {
				char what[48];
				snprintf(what, sizeof what, "in literal %s (expecting '%c')", lit,
				         lit[js->lit_pos]);
				rc = fail(js, RC_EPARSE, base + i, c, what);
				goto out;
			}
			i++;
			if (lit[++js->lit_pos] == '\0') {
				done = end_value(js);
				vend = i;
			}
			break;
		}
		case ST_NUM_MINUS:
			if (c == '0') {
				js->state = ST_NUM_ZERO;
			} else if (c >= '1' && c <= '9') {
				js->state = ST_NUM_INT;
			} else {
				rc = fail(js, RC_EPARSE, base + i, c, "in numeric literal");
				goto out;
			}
			i++;
			break;
		case ST_NUM_DOT:
			if (!is_digit(c)) {
				rc = fail(js, RC_EPARSE, base + i, c,
				          "after decimal point in numeric literal");
				goto out;
			}
			js->state = ST_NUM_FRAC;
			i++;
			break;
		case ST_NUM_E:
			if (c == '+' || c == '-') {
				js->state = ST_NUM_ESIGN;
				i++;
				break;
			}
			/* fall through */
		case ST_NUM_ESIGN:
			if (!is_digit(c)) {
				rc = fail(js, RC_EPARSE, base + i, c,
				          "in exponent of numeric literal");
				goto out;
			}
			js->state = ST_NUM_EXP;
			i++;
			break;
		case ST_NUM_ZERO:
		case ST_NUM_INT:
		case ST_NUM_FRAC:
		case ST_NUM_EXP:
			if (js->state != ST_NUM_ZERO && is_digit(c)) {
				while (i < n && is_digit(p[i]))
					i++;
				break;
			}
			if (c == '.' && (js->state == ST_NUM_ZERO || js->state == ST_NUM_INT)) {
				js->state = ST_NUM_DOT;
				i++;
				break;
			}
			if ((c == 'e' || c == 'E') && js->state != ST_NUM_EXP) {
				js->state = ST_NUM_E;
				i++;
				break;
			}
			/* The number ended before c; c is examined again in the next state. */
			done = end_value(js);
			vend = i;
			break;
		default:
			return RC_EINVAL; /* ST_ENDED handled above; unreachable */
		}
	}

	if (done) {
		size_t total = js->vlen + (vend - vstart);
		if (total > js->max_value) {
			char t[64];
			snprintf(t, sizeof t, "value exceeds %zu bytes", js->max_value);
			rc = fail_text(js, RC_ERANGE, base + vend - 1, t);
			goto out;
		}
		if (js->part.len) {
			if ((rc = rc_buf_append(&js->part, p + vstart, vend - vstart)) != RC_OK)
				goto out;
			*value = rc_buf_str(&js->part);
			js->returned = 1;
		} else {
			*value = (struct rc_str){data + vstart, vend - vstart};
		}
		js->vlen = 0;
		js->offset = base + vend;
		*consumed = vend;
		return RC_OK;
	}
	if (in_value) {
		if (n < len) {
			char t[64];
			snprintf(t, sizeof t, "value exceeds %zu bytes", js->max_value);
			rc = fail_text(js, RC_ERANGE, base + n - 1, t);
			goto out;
		}
		size_t add = len - vstart;
		if (js->vlen + add > js->max_value) {
			char t[64];
			snprintf(t, sizeof t, "value exceeds %zu bytes", js->max_value);
			rc = fail_text(js, RC_ERANGE, base + len - 1, t);
			goto out;
		}
		if ((rc = rc_buf_append(&js->part, p + vstart, add)) != RC_OK)
			goto out;
		js->vlen += add;
	}
	js->offset = base + len;
	*consumed = len;
	return RC_OK;
out:
	if (rc == RC_ENOMEM)
		fail_text(js, RC_ENOMEM, base + i, "out of memory");
	js->offset = base + i;
	*consumed = i;
	if (err)
		*err = js->errinfo;
	return rc;
}

int rc_jsonstream_end(struct rc_jsonstream *js, struct rc_str *value, struct rc_errinfo *err)
{
	if (!js || !value)
		return RC_EINVAL;
	*value = (struct rc_str){NULL, 0};
	if (js->err) {
		if (err)
			*err = js->errinfo;
		return js->err;
	}
	if (js->returned) {
		rc_buf_reset(&js->part);
		js->returned = 0;
	}
	int st = js->state;
	js->state = ST_ENDED;
	if (st == ST_TOP || st == ST_ENDED)
		return RC_OK;
	if (js->depth == 0 &&
	    (st == ST_NUM_ZERO || st == ST_NUM_INT || st == ST_NUM_FRAC || st == ST_NUM_EXP)) {
		*value = rc_buf_str(&js->part);
		js->returned = 1;
		return RC_OK;
	}
	fail_text(js, RC_ETRUNC, js->offset, "unexpected end of JSON input");
	if (err)
		*err = js->errinfo;
	return RC_ETRUNC;
}
