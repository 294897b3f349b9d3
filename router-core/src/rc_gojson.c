/*
 * Go encoding/json string escaping and a canonical object writer.
 *
 * morpheus-protocol §2.3: the signed bytes are Go's json.Marshal of the parsed struct, so one
 * differing byte (an unescaped '<' in a prompt, a raw U+2028, a different treatment of an
 * invalid UTF-8 byte) makes every signature over that message fail. The escaper is a transcription
 * of Go's appendString (encoding/json/encode.go, escapeHTML = true, Go >= 1.22 for \b and \f)
 * together with utf8.DecodeRuneInString's notion of validity; the Python oracle is
 * ../shared/vectors/gojson.py (which sees decoded code points only, so the invalid-UTF-8 cases are
 * taken from Go's decoder rules: every byte that cannot start a complete, shortest-form, non-
 * surrogate sequence is replaced on its own, and decoding resumes at the next byte).
 *
 * Speed: most bytes are hex digits or plain ASCII; a 256-entry table sends runs of safe bytes to
 * one memcpy, so escaping costs about one table lookup per byte.
 */
#include <string.h>

#include <router-core/rc_gojson.h>

/* 1: copy verbatim; 0: needs escaping (ASCII) or UTF-8 validation (>= 0x80). */
static const uint8_t safe_byte[256] = {
        /* 0x20 .. 0x7f except " & < > \ */
        [0x20] = 1, [0x21] = 1, [0x23] = 1, [0x24] = 1, [0x25] = 1, [0x27] = 1, [0x28] = 1,
        [0x29] = 1, [0x2a] = 1, [0x2b] = 1, [0x2c] = 1, [0x2d] = 1, [0x2e] = 1, [0x2f] = 1,
        [0x30] = 1, [0x31] = 1, [0x32] = 1, [0x33] = 1, [0x34] = 1, [0x35] = 1, [0x36] = 1,
        [0x37] = 1, [0x38] = 1, [0x39] = 1, [0x3a] = 1, [0x3b] = 1, [0x3d] = 1, [0x3f] = 1,
        [0x40] = 1, [0x41] = 1, [0x42] = 1, [0x43] = 1, [0x44] = 1, [0x45] = 1, [0x46] = 1,
        [0x47] = 1, [0x48] = 1, [0x49] = 1, [0x4a] = 1, [0x4b] = 1, [0x4c] = 1, [0x4d] = 1,
        [0x4e] = 1, [0x4f] = 1, [0x50] = 1, [0x51] = 1, [0x52] = 1, [0x53] = 1, [0x54] = 1,
        [0x55] = 1, [0x56] = 1, [0x57] = 1, [0x58] = 1, [0x59] = 1, [0x5a] = 1, [0x5b] = 1,
        [0x5d] = 1, [0x5e] = 1, [0x5f] = 1, [0x60] = 1, [0x61] = 1, [0x62] = 1, [0x63] = 1,
        [0x64] = 1, [0x65] = 1, [0x66] = 1, [0x67] = 1, [0x68] = 1, [0x69] = 1, [0x6a] = 1,
        [0x6b] = 1, [0x6c] = 1, [0x6d] = 1, [0x6e] = 1, [0x6f] = 1, [0x70] = 1, [0x71] = 1,
        [0x72] = 1, [0x73] = 1, [0x74] = 1, [0x75] = 1, [0x76] = 1, [0x77] = 1, [0x78] = 1,
        [0x79] = 1, [0x7a] = 1, [0x7b] = 1, [0x7c] = 1, [0x7d] = 1, [0x7e] = 1, [0x7f] = 1,
};

/*
 * Length of the valid UTF-8 sequence starting at s[0] (>= 0x80), or 0 when Go would return
 * (RuneError, 1). The second-byte ranges exclude overlong forms (E0, F0), UTF-16 surrogates
 * (ED A0..BF) and code points above U+10FFFF (F4 90.., F5..FF); C0, C1 and bare continuation
 * bytes never start a sequence. A sequence cut short by the end of input is invalid too.
 */
static size_t utf8_seq_len(const uint8_t *s, size_t n)
{
	uint8_t c = s[0], lo = 0x80, hi = 0xbf;
	size_t need;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < need || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return need;
}

int rc_gojson_append_valid_utf8(struct rc_buf *out, const char *s, size_t n)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t start = 0, i = 0;
	int rc = RC_OK;
	while (rc == RC_OK && i < n) {
		size_t len = p[i] < 0x80 ? 1 : utf8_seq_len(p + i, n - i);
		if (len) {
			i += len;
			continue;
		}
		rc = rc_buf_append(out, s + start, i - start);
		if (rc == RC_OK)
			rc = rc_buf_append(out, "\xef\xbf\xbd", 3);
		start = ++i;
	}
	return rc == RC_OK ? rc_buf_append(out, s + start, n - start) : rc;
}

int rc_gojson_append_string(struct rc_buf *out, const char *str, size_t n)
{
	static const char hexd[] = "0123456789abcdef";
	const uint8_t *s = (const uint8_t *)str;
	int rc;
	/* One grow for the common case (nothing to escape) keeps the loop free of reallocs. */
	if ((rc = rc_buf_grow(out, n + 2)) != RC_OK)
		return rc;
	out->ptr[out->len++] = '"';
	size_t start = 0, i = 0;
	while (i < n) {
		uint8_t c = s[i];
		if (safe_byte[c]) {
			i++;
			continue;
		}
		char esc[6];
		size_t esc_len, adv = 1;
		if (c < 0x80) {
			esc[0] = '\\';
			esc_len = 2;
			switch (c) {
			case '"':
				esc[1] = '"';
				break;
			case '\\':
				esc[1] = '\\';
				break;
			case '\b':
				esc[1] = 'b';
				break;
			case '\f':
				esc[1] = 'f';
				break;
			case '\n':
				esc[1] = 'n';
				break;
			case '\r':
				esc[1] = 'r';
				break;
			case '\t':
				esc[1] = 't';
				break;
			default: /* other control bytes and the HTML trio < > & */
				memcpy(esc + 1, "u00", 3);
				esc[4] = hexd[c >> 4];
				esc[5] = hexd[c & 15];
				esc_len = 6;
			}
		} else {
			size_t sl = utf8_seq_len(s + i, n - i);
			if (sl == 0) {
				memcpy(esc, "\\ufffd", 6);
				esc_len = 6;
			} else if (sl == 3 && c == 0xe2 && s[i + 1] == 0x80 &&
			           (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) {
				memcpy(esc, "\\u202", 5);
				esc[5] = s[i + 2] == 0xa8 ? '8' : '9';
				esc_len = 6;
				adv = 3;
			} else {
				i += sl; /* valid non-ASCII: verbatim */
				continue;
			}
		}
		if ((rc = rc_buf_append(out, s + start, i - start)) != RC_OK ||
		    (rc = rc_buf_append(out, esc, esc_len)) != RC_OK)
			return rc;
		i += adv;
		start = i;
	}
	if ((rc = rc_buf_append(out, s + start, n - start)) != RC_OK)
		return rc;
	return rc_buf_putc(out, '"');
}

void rc_gojson_w_init(struct rc_gojson_w *w, struct rc_buf *out)
{
	w->out = out;
	w->rc = RC_OK;
	w->depth = 0;
	w->used = 0;
}

/* Separator and key of the next member; false when the writer is already failed. */
static int put_key(struct rc_gojson_w *w, const char *key)
{
	if (w->rc != RC_OK)
		return 0;
	if (w->depth > 0) {
		uint32_t bit = 1u << (w->depth - 1);
		if (!key) {
			w->rc = RC_EINVAL; /* a member needs a key */
			return 0;
		}
		if ((w->used & bit) && (w->rc = rc_buf_putc(w->out, ',')) != RC_OK)
			return 0;
		w->used |= bit;
	}
	if (key) {
		if ((w->rc = rc_gojson_append_string(w->out, key, strlen(key))) != RC_OK ||
		    (w->rc = rc_buf_putc(w->out, ':')) != RC_OK)
			return 0;
	}
	return 1;
}

void rc_gojson_w_begin(struct rc_gojson_w *w, const char *key)
{
	if (!put_key(w, key))
		return;
	if (w->depth >= 32) {
		w->rc = RC_EINVAL;
		return;
	}
	if ((w->rc = rc_buf_putc(w->out, '{')) != RC_OK)
		return;
	w->depth++;
	w->used &= ~(1u << (w->depth - 1));
}

void rc_gojson_w_end(struct rc_gojson_w *w)
{
	if (w->rc != RC_OK)
		return;
	if (w->depth == 0) {
		w->rc = RC_EINVAL;
		return;
	}
	w->depth--;
	w->rc = rc_buf_putc(w->out, '}');
}

void rc_gojson_w_str(struct rc_gojson_w *w, const char *key, const char *s, size_t n)
{
	if (put_key(w, key))
		w->rc = rc_gojson_append_string(w->out, s, n);
}

void rc_gojson_w_hex0x(struct rc_gojson_w *w, const char *key, const uint8_t *b, size_t n)
{
	if (put_key(w, key) && (w->rc = rc_buf_append(w->out, "\"0x", 3)) == RC_OK &&
	    (w->rc = rc_buf_append_hex(w->out, b, n)) == RC_OK)
		w->rc = rc_buf_putc(w->out, '"');
}

void rc_gojson_w_hex(struct rc_gojson_w *w, const char *key, const uint8_t *b, size_t n)
{
	if (put_key(w, key) && (w->rc = rc_buf_putc(w->out, '"')) == RC_OK &&
	    (w->rc = rc_buf_append_hex(w->out, b, n)) == RC_OK)
		w->rc = rc_buf_putc(w->out, '"');
}

void rc_gojson_w_u64(struct rc_gojson_w *w, const char *key, uint64_t v)
{
	if (put_key(w, key))
		w->rc = rc_buf_append_u64(w->out, v);
}

void rc_gojson_w_i64(struct rc_gojson_w *w, const char *key, int64_t v)
{
	if (!put_key(w, key))
		return;
	if (v < 0 && (w->rc = rc_buf_putc(w->out, '-')) != RC_OK)
		return;
	/* Negate in unsigned arithmetic so INT64_MIN does not overflow. */
	w->rc = rc_buf_append_u64(w->out, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
}

void rc_gojson_w_raw(struct rc_gojson_w *w, const char *key, const char *json, size_t n)
{
	if (put_key(w, key))
		w->rc = rc_buf_append(w->out, json, n);
}

int rc_gojson_w_finish(const struct rc_gojson_w *w)
{
	if (w->rc != RC_OK)
		return w->rc;
	return w->depth == 0 ? RC_OK : RC_EINVAL;
}
