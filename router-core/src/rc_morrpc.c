/*
 * MOR-RPC message codec (morpheus-protocol §2.2-§2.5).
 *
 * Each message is a table of fields in Go struct declaration order (proxy-router
 * morrpcmessage/structs.go): the same table drives the signed bytes, the wire form and the
 * decoder, so the three can never disagree on order or on which signature is omitted. The
 * rules the tables encode (§2.3):
 *   - keys in struct order, never sorted; no whitespace; Go string escaping (rc_gojson);
 *   - an empty omitempty signature is absent from the signed bytes, except in the five structs
 *     whose signature is not omitempty (ping, pong, RPCErrorData, the two stream-start structs),
 *     where "signature":"0x" stays in place (§7 item 2);
 *   - HexString/Address/Hash as "0x"+lowercase hex, BigInt as a quoted decimal, uint64 bare.
 *
 * Decoding follows Go's json.Unmarshal where a Go peer could tell the difference: keys are
 * matched with Go's case folding (exact match first is irrelevant: no two fields fold alike),
 * unknown keys are ignored (and therefore not covered by the signature), null leaves a field
 * empty. It is deliberately stricter where Go is lenient in ways only a hand-made message
 * exercises, because a clear error beats signing or acting on a value nobody meant:
 *   - lib.HexString in Go strips the quotes without unescaping and decodes up to the first bad
 *     digit (odd lengths left-padded); here hex must be clean and of the protocol's length;
 *   - uint64 beyond 2^63-1 is refused (jansson's integers are signed 64-bit);
 *   - spend must be a non-negative integer below 2^256 (Go's big.Int takes a sign);
 *   - exact duplicate keys are refused (Go keeps the last);
 *   - invalid UTF-8 and unpaired \ud800-style escapes in strings are refused by jansson (Go
 *     would substitute U+FFFD and sign over that).
 * None of these can be produced by json.Marshal, so no reference peer is turned away.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <router-core/rc_ecies.h>
#include <router-core/rc_gojson.h>
#include <router-core/rc_keccak.h>
#include <router-core/rc_morrpc.h>

enum kind {
	K_HEX,    /* lib.HexString of a fixed protocol length `len` */
	K_NONCE,  /* lib.HexString, 1..RC_MORRPC_NONCE_MAX bytes (ping nonce) */
	K_ADDR,   /* common.Address: "0x" required, 20 bytes */
	K_HASH,   /* common.Hash: "0x" required, 32 bytes */
	K_U64,    /* uint64 */
	K_I64,    /* int */
	K_STR,    /* string, borrowed */
	K_BIGINT, /* lib.BigInt as struct rc_u256 */
	K_SIG,    /* the signature: b->sig / b->sig_len */
	K_OBJ,    /* nested struct: sub / nsub */
};

enum {
	F_OPTIONAL = 1,  /* not checked by the reference's validator */
	F_OMITEMPTY = 2, /* dropped from every serialization when empty */
	F_SIG_KEEP = 4,  /* signature not omitempty: "signature":"0x" stays in the signed bytes */
};

struct field {
	const char *name;
	uint8_t kind;
	uint8_t flags;
	uint16_t len;
	size_t off; /* into struct rc_morrpc_body */
	const struct field *sub;
	size_t nsub;
};

#define OFF(m) offsetof(struct rc_morrpc_body, m)
#define HEX(n, m, l)                                                                               \
	{                                                                                          \
		n, K_HEX, 0, l, OFF(m), NULL, 0                                                    \
	}
#define FLD(n, k, m)                                                                               \
	{                                                                                          \
		n, k, 0, 0, OFF(m), NULL, 0                                                        \
	}
#define SIG(fl)                                                                                    \
	{                                                                                          \
		"signature", K_SIG, fl, RC_SECP_SIG_LEN, 0, NULL, 0                                \
	}

static const struct field ping_fields[] = {
        {"nonce", K_NONCE, 0, 0, OFF(u.ping.nonce), NULL, 0},
        SIG(F_SIG_KEEP),
};
static const struct field pong_fields[] = {
        {"nonce", K_NONCE, 0, 0, OFF(u.ping.nonce), NULL, 0},
        {"version", K_STR, F_OPTIONAL | F_OMITEMPTY, 0, OFF(u.ping.version), NULL, 0},
        SIG(F_SIG_KEEP),
};
static const struct field session_req_fields[] = {
        SIG(0),
        FLD("user", K_ADDR, u.session_req.user),
        HEX("key", u.session_req.key, RC_SECP_PUBKEY_LEN),
        FLD("spend", K_BIGINT, u.session_req.spend),
        FLD("timestamp", K_U64, u.session_req.timestamp),
        FLD("bidid", K_HASH, u.session_req.bid_id),
};
static const struct field session_res_fields[] = {
        HEX("message", u.session_res.provider_key, RC_SECP_PUBKEY_LEN),
        HEX("approval", u.session_res.approval, RC_MORRPC_APPROVAL_LEN),
        HEX("approvalSig", u.session_res.approval_sig, RC_SECP_SIG_LEN),
        FLD("user", K_ADDR, u.session_res.user),
        FLD("timestamp", K_U64, u.session_res.timestamp),
        SIG(0),
};
static const struct field prompt_req_fields[] = {
        SIG(0),
        FLD("sessionid", K_HASH, u.prompt_req.session_id),
        FLD("message", K_STR, u.prompt_req.message),
        FLD("timestamp", K_U64, u.prompt_req.timestamp),
};
static const struct field prompt_res_fields[] = {
        FLD("message", K_STR, u.prompt_res.message),
        SIG(0),
        FLD("timestamp", K_U64, u.prompt_res.timestamp),
};
static const struct field error_data_fields[] = {
        {"timestamp", K_U64, F_OPTIONAL, 0, OFF(u.error.timestamp), NULL, 0},
        SIG(F_SIG_KEEP | F_OPTIONAL),
};
static const struct field error_fields[] = {
        FLD("message", K_STR, u.error.message),
        {"code", K_I64, F_OPTIONAL, 0, OFF(u.error.code), NULL, 0},
        {"data", K_OBJ, F_OPTIONAL, 0, 0, error_data_fields, 2},
};
static const struct field report_req_fields[] = {
        SIG(0),
        FLD("message", K_STR, u.report_req.message),
        FLD("timestamp", K_U64, u.report_req.timestamp),
};
static const struct field report_res_fields[] = {
        HEX("message", u.report_res.receipt, RC_MORRPC_RECEIPT_LEN),
        HEX("signedReport", u.report_res.signed_report, RC_SECP_SIG_LEN),
        SIG(0),
        FLD("timestamp", K_U64, u.report_res.timestamp),
};

struct msgtype {
	const char *method; /* requests only */
	const struct field *fields;
	size_t n;
};

#define T(m, f)                                                                                    \
	{                                                                                          \
		m, f, sizeof f / sizeof f[0]                                                       \
	}
static const struct msgtype types[] = {
        [RC_MORRPC_PING_REQ] = T("network.ping", ping_fields),
        [RC_MORRPC_PONG_RES] = T(NULL, pong_fields),
        [RC_MORRPC_SESSION_REQ] = T("session.request", session_req_fields),
        [RC_MORRPC_SESSION_RES] = T(NULL, session_res_fields),
        [RC_MORRPC_PROMPT_REQ] = T("session.prompt", prompt_req_fields),
        [RC_MORRPC_PROMPT_RES] = T(NULL, prompt_res_fields),
        [RC_MORRPC_ERROR] = T(NULL, error_fields),
        [RC_MORRPC_REPORT_REQ] = T("session.report", report_req_fields),
        [RC_MORRPC_REPORT_RES] = T(NULL, report_res_fields),
};

static const struct msgtype *type_of(enum rc_morrpc_type t)
{
	if ((int)t <= RC_MORRPC_NONE || (int)t > RC_MORRPC_REPORT_RES)
		return NULL;
	return &types[t];
}

__attribute__((format(printf, 4, 5))) static int set_err(struct rc_errinfo *err, int rc, size_t off,
                                                         const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		err->offset = off;
		vsnprintf(err->text, sizeof err->text, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* ---- encoding ------------------------------------------------------------------------------- */

enum mode { SIGNED, WIRE };

static void write_fields(struct rc_gojson_w *w, const struct field *f, size_t n,
                         const struct rc_morrpc_body *b, enum mode mode)
{
	const char *base = (const char *)b;
	for (size_t i = 0; i < n; i++, f++) {
		const void *p = base + f->off;
		switch (f->kind) {
		case K_HEX:
			rc_gojson_w_hex0x(w, f->name, p, f->len);
			break;
		case K_NONCE:
			rc_gojson_w_hex0x(w, f->name, p, b->u.ping.nonce_len);
			break;
		case K_ADDR:
			rc_gojson_w_hex0x(w, f->name, p, RC_SECP_ADDR_LEN);
			break;
		case K_HASH:
			rc_gojson_w_hex0x(w, f->name, p, 32);
			break;
		case K_U64:
			rc_gojson_w_u64(w, f->name, *(const uint64_t *)p);
			break;
		case K_I64:
			rc_gojson_w_i64(w, f->name, *(const int64_t *)p);
			break;
		case K_STR: {
			const struct rc_str *s = p;
			if (s->len || !(f->flags & F_OMITEMPTY))
				rc_gojson_w_str(w, f->name, s->ptr, s->len);
			break;
		}
		case K_BIGINT: {
			char dec[RC_U256_DEC_SIZE];
			int n_dec = rc_u256_format_dec(p, dec, sizeof dec);
			if (n_dec < 0)
				w->rc = n_dec;
			else
				rc_gojson_w_str(w, f->name, dec, (size_t)n_dec);
			break;
		}
		case K_SIG: {
			size_t len = mode == SIGNED ? 0 : b->sig_len;
			if (len || (f->flags & F_SIG_KEEP))
				rc_gojson_w_hex0x(w, f->name, b->sig, len);
			break;
		}
		case K_OBJ:
			rc_gojson_w_begin(w, f->name);
			write_fields(w, f->sub, f->nsub, b, mode);
			rc_gojson_w_end(w);
			break;
		}
	}
}

static int write_body(const struct rc_morrpc_body *b, enum mode mode, struct rc_gojson_w *w,
                      const char *key)
{
	const struct msgtype *t = type_of(b->type);
	if (!t)
		return RC_EINVAL;
	rc_gojson_w_begin(w, key);
	write_fields(w, t->fields, t->n, b, mode);
	rc_gojson_w_end(w);
	return RC_OK;
}

int rc_morrpc_signed_bytes(const struct rc_morrpc_body *b, struct rc_buf *out)
{
	struct rc_gojson_w w;
	if (!b || !out)
		return RC_EINVAL;
	rc_gojson_w_init(&w, out);
	int rc = write_body(b, SIGNED, &w, NULL);
	return rc != RC_OK ? rc : rc_gojson_w_finish(&w);
}

/* keccak256 of the signed bytes, built past buf's content and then cut off again. */
static int signed_hash(const struct rc_morrpc_body *b, struct rc_buf *buf, uint8_t hash[32])
{
	size_t len0 = buf->len;
	int rc = rc_morrpc_signed_bytes(b, buf);
	if (rc == RC_OK)
		rc_keccak256(buf->ptr + len0, buf->len - len0, hash);
	if (buf->ptr)
		rc_buf_setlen(buf, len0);
	return rc;
}

int rc_morrpc_sign(struct rc_morrpc_body *b, const struct rc_secp_privkey *k,
                   struct rc_buf *scratch)
{
	uint8_t hash[32];
	if (!b || !k || !scratch)
		return RC_EINVAL;
	int rc = signed_hash(b, scratch, hash);
	if (rc != RC_OK)
		return rc;
	if ((rc = rc_secp_sign_hash(k, hash, b->sig)) != RC_OK)
		return rc;
	b->sig_len = RC_SECP_SIG_LEN;
	return RC_OK;
}

int rc_morrpc_verify(const struct rc_morrpc_body *b, const uint8_t pub[RC_SECP_PUBKEY_LEN],
                     struct rc_buf *scratch)
{
	uint8_t hash[32], sig[RC_SECP_SIG_LEN];
	if (!b || !pub || !scratch)
		return RC_EINVAL;
	if (b->sig_len != RC_SECP_SIG_LEN)
		return RC_ECRYPTO;
	int rc = signed_hash(b, scratch, hash);
	if (rc != RC_OK)
		return rc;
	/*
	 * §2.3: the reference drops v and runs a plain ECDSA verify (low S required). rc_secp
	 * verifies by recovery, where v selects the candidate key, so try the parity the signer
	 * claimed and then the other one: together they accept exactly what a v-less verify does
	 * (recovery ids 2 and 3 need r >= n - p, which no RFC 6979 signature reaches in practice).
	 */
	memcpy(sig, b->sig, sizeof sig);
	uint8_t v = sig[64] >= 27 ? (uint8_t)(sig[64] - 27) : sig[64];
	sig[64] = v & 1;
	if (rc_secp_verify_pubkey(hash, sig, pub) == RC_OK)
		return RC_OK;
	sig[64] ^= 1;
	return rc_secp_verify_pubkey(hash, sig, pub);
}

int rc_morrpc_verify_address(const struct rc_morrpc_body *b, const uint8_t addr[RC_SECP_ADDR_LEN],
                             struct rc_buf *scratch)
{
	uint8_t hash[32], got[RC_SECP_ADDR_LEN];
	if (!b || !addr || !scratch)
		return RC_EINVAL;
	/* go-ethereum Ecrecover wants the raw recovery id: 27/28 fail (§2.3, §7 item 3). */
	if (b->sig_len != RC_SECP_SIG_LEN || b->sig[64] > 3)
		return RC_ECRYPTO;
	int rc = signed_hash(b, scratch, hash);
	if (rc != RC_OK)
		return rc;
	if (rc_secp_recover_address(hash, b->sig, got) != RC_OK)
		return RC_ECRYPTO;
	return memcmp(got, addr, sizeof got) == 0 ? RC_OK : RC_ECRYPTO;
}

static int is_request(enum rc_morrpc_type t)
{
	return t == RC_MORRPC_PING_REQ || t == RC_MORRPC_SESSION_REQ || t == RC_MORRPC_PROMPT_REQ ||
	       t == RC_MORRPC_REPORT_REQ;
}

int rc_morrpc_encode_request(const struct rc_morrpc_body *b, struct rc_str id, struct rc_buf *out)
{
	struct rc_gojson_w w;
	if (!b || !out || !is_request(b->type) || (!id.ptr && id.len))
		return RC_EINVAL;
	const char *method = types[b->type].method;
	rc_gojson_w_init(&w, out);
	rc_gojson_w_begin(&w, NULL);
	rc_gojson_w_str(&w, "id", id.ptr, id.len);
	rc_gojson_w_str(&w, "method", method, strlen(method));
	write_body(b, WIRE, &w, "params");
	rc_gojson_w_end(&w);
	return rc_gojson_w_finish(&w);
}

int rc_morrpc_encode_response(const struct rc_morrpc_body *b, struct rc_str id, struct rc_buf *out)
{
	struct rc_gojson_w w;
	if (!b || !out || !type_of(b->type) || is_request(b->type) || (!id.ptr && id.len))
		return RC_EINVAL;
	/* §2.2: RpcResponse is {id, result, error?}; result is always present, null on error. */
	rc_gojson_w_init(&w, out);
	rc_gojson_w_begin(&w, NULL);
	rc_gojson_w_str(&w, "id", id.ptr, id.len);
	if (b->type == RC_MORRPC_ERROR) {
		rc_gojson_w_raw(&w, "result", "null", 4);
		write_body(b, WIRE, &w, "error");
	} else {
		write_body(b, WIRE, &w, "result");
	}
	rc_gojson_w_end(&w);
	return rc_gojson_w_finish(&w);
}

/* ---- decoding ------------------------------------------------------------------------------- */

/*
 * Go's field matching (encoding/json foldName): ASCII letters fold to upper case, and a
 * non-ASCII rune r matches the ASCII letter unicode.ToUpper(unicode.ToLower(r)). Among all of
 * Unicode only four runes land on ASCII letters that way: U+017F (long s) -> S, U+212A (Kelvin)
 * -> K, U+0130 and U+0131 (dotted and dotless i) -> I.
 */
static int key_matches(const char *key, size_t klen, const char *name)
{
	const uint8_t *k = (const uint8_t *)key;
	size_t i = 0;
	for (; *name; name++) {
		uint8_t want = (uint8_t)*name;
		if (want >= 'a' && want <= 'z')
			want -= 'a' - 'A';
		if (i >= klen)
			return 0;
		uint8_t c = k[i];
		if (c < 0x80) {
			if (c >= 'a' && c <= 'z')
				c -= 'a' - 'A';
			if (c != want)
				return 0;
			i++;
			continue;
		}
		uint8_t folded = 0;
		if (i + 1 < klen && c == 0xc5 && k[i + 1] == 0xbf)
			folded = 'S';
		else if (i + 1 < klen && c == 0xc4 && (k[i + 1] == 0xb0 || k[i + 1] == 0xb1))
			folded = 'I';
		if (folded) {
			i += 2;
		} else if (i + 2 < klen && c == 0xe2 && k[i + 1] == 0x84 && k[i + 2] == 0xaa) {
			folded = 'K';
			i += 3;
		}
		if (folded != want)
			return 0;
	}
	return i == klen;
}

/* The member of obj that Go would bind to name (the last in document order), for envelopes. */
static const json_t *member(const json_t *obj, const char *name)
{
	const char *key;
	size_t klen;
	json_t *v;
	const json_t *found = NULL;
	void *it;
	/* jansson keeps insertion order, which is document order for parsed objects. */
	for (it = json_object_iter((json_t *)obj); it;
	     it = json_object_iter_next((json_t *)obj, it)) {
		key = json_object_iter_key(it);
		klen = json_object_iter_key_len(it);
		v = json_object_iter_value(it);
		if (key_matches(key, klen, name))
			found = v;
	}
	return found;
}

static int all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

static int decode_fields(const struct field *f, size_t n, const json_t *obj,
                         struct rc_morrpc_body *b, struct rc_errinfo *err);

/* Decode one present, non-null JSON value v into field f. */
static int decode_one(const struct field *f, const json_t *v, struct rc_morrpc_body *b,
                      struct rc_errinfo *err)
{
	char *p = (char *)b + f->off;
	const char *s = json_string_value(v);
	size_t slen = s ? json_string_length(v) : 0;
	size_t got;
	switch (f->kind) {
	case K_HEX:
	case K_NONCE:
	case K_SIG:
	case K_ADDR:
	case K_HASH: {
		if (!s)
			return set_err(err, RC_EPROTO, 0, "\"%s\" must be a hex string", f->name);
		if ((f->kind == K_ADDR || f->kind == K_HASH) &&
		    (slen < 2 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')))
			return set_err(err, RC_EPROTO, 0, "\"%s\" needs a 0x prefix", f->name);
		uint8_t tmp[RC_MORRPC_RECEIPT_LEN];
		size_t want = f->kind == K_ADDR   ? RC_SECP_ADDR_LEN
		              : f->kind == K_HASH ? 32
		                                  : f->len;
		size_t cap = f->kind == K_NONCE ? RC_MORRPC_NONCE_MAX : want;
		if (rc_hex_decode(s, slen, tmp, cap, &got, NULL) != RC_OK)
			return set_err(err, RC_EPROTO, 0,
			               "\"%s\" is not valid hex of the right length", f->name);
		if (f->kind == K_NONCE) {
			memcpy(p, tmp, got);
			b->u.ping.nonce_len = (uint8_t)got;
		} else if (f->kind == K_SIG) {
			/* Optional signatures (errors) may be empty or the one-byte "0x00". */
			if (got != RC_SECP_SIG_LEN && !(f->flags & F_OPTIONAL))
				return set_err(err, RC_EPROTO, 0, "\"%s\" must be 65 bytes",
				               f->name);
			memcpy(b->sig, tmp, got);
			b->sig_len = (uint8_t)got;
		} else {
			if (got != want)
				return set_err(err, RC_EPROTO, 0,
				               "\"%s\" is not valid hex of the right length",
				               f->name);
			memcpy(p, tmp, got);
		}
		return RC_OK;
	}
	case K_U64:
	case K_I64: {
		if (!json_is_integer(v))
			return set_err(err, RC_EPROTO, 0, "\"%s\" must be an integer", f->name);
		json_int_t x = json_integer_value(v);
		if (f->kind == K_U64) {
			if (x < 0)
				return set_err(err, RC_EPROTO, 0, "\"%s\" must not be negative",
				               f->name);
			*(uint64_t *)(void *)p = (uint64_t)x;
		} else {
			*(int64_t *)(void *)p = (int64_t)x;
		}
		return RC_OK;
	}
	case K_STR:
		if (!s)
			return set_err(err, RC_EPROTO, 0, "\"%s\" must be a string", f->name);
		*(struct rc_str *)(void *)p = (struct rc_str){s, slen};
		return RC_OK;
	case K_BIGINT: {
		/* lib.BigInt accepts a quoted or a bare decimal (§2.3). */
		char dec[32];
		if (json_is_integer(v) && json_integer_value(v) >= 0) {
			int n = snprintf(dec, sizeof dec, "%lld", (long long)json_integer_value(v));
			s = dec;
			slen = (size_t)n;
		} else if (!s) {
			return set_err(err, RC_EPROTO, 0, "\"%s\" must be a decimal string",
			               f->name);
		}
		if (rc_u256_parse_dec((struct rc_u256 *)(void *)p, s, slen, NULL) != RC_OK)
			return set_err(err, RC_EPROTO, 0, "\"%s\" is not a decimal below 2^256",
			               f->name);
		return RC_OK;
	}
	case K_OBJ:
		if (!json_is_object(v))
			return set_err(err, RC_EPROTO, 0, "\"%s\" must be an object", f->name);
		return decode_fields(f->sub, f->nsub, v, b, err);
	}
	return RC_EINVAL;
}

/* The reference's validator: required fields present and non-zero. */
static int present(const struct field *f, const struct rc_morrpc_body *b)
{
	const char *p = (const char *)b + f->off;
	switch (f->kind) {
	case K_NONCE:
		return b->u.ping.nonce_len > 0;
	case K_SIG:
		return b->sig_len > 0;
	case K_ADDR:
		return !all_zero((const uint8_t *)p, RC_SECP_ADDR_LEN);
	case K_HASH:
		return !all_zero((const uint8_t *)p, 32);
	case K_U64:
		return *(const uint64_t *)(const void *)p != 0;
	case K_STR:
		return ((const struct rc_str *)(const void *)p)->len > 0;
	default: /* fixed-length hex, spend: checked by `seen` */
		return 1;
	}
}

/*
 * Go's decoder visits members in document order and stores every one whose key folds to a
 * field's name: the last wins, null is a no-op, and one of the wrong type fails the whole
 * Unmarshal even if a later member would have overridden it. Mirror exactly that.
 */
static int decode_fields(const struct field *f, size_t n, const json_t *obj,
                         struct rc_morrpc_body *b, struct rc_errinfo *err)
{
	for (size_t i = 0; i < n; i++, f++) {
		int seen = 0;
		for (void *it = json_object_iter((json_t *)obj); it;
		     it = json_object_iter_next((json_t *)obj, it)) {
			const json_t *v = json_object_iter_value(it);
			if (json_is_null(v) || !key_matches(json_object_iter_key(it),
			                                    json_object_iter_key_len(it), f->name))
				continue;
			int rc = decode_one(f, v, b, err);
			if (rc != RC_OK)
				return rc;
			seen = 1;
		}
		if (!(f->flags & F_OPTIONAL) && (!seen || !present(f, b)))
			return set_err(err, RC_EPROTO, 0, "missing or empty \"%s\"", f->name);
	}
	return RC_OK;
}

int rc_morrpc_decode(struct rc_morrpc_body *b, enum rc_morrpc_type type, const json_t *obj,
                     struct rc_errinfo *err)
{
	const struct msgtype *t = type_of(type);
	if (!b || !t)
		return RC_EINVAL;
	memset(b, 0, sizeof *b);
	b->type = type;
	if (!json_is_object(obj))
		return set_err(err, RC_EPROTO, 0, "%s must be a JSON object",
		               is_request(type)          ? "params"
		               : type == RC_MORRPC_ERROR ? "error"
		                                         : "result");
	return decode_fields(t->fields, t->n, obj, b, err);
}

enum rc_morrpc_type rc_morrpc_method_type(struct rc_str method)
{
	for (int t = RC_MORRPC_PING_REQ; t <= RC_MORRPC_REPORT_RES; t++) {
		const char *m = types[t].method;
		if (m && strlen(m) == method.len && memcmp(m, method.ptr, method.len) == 0)
			return (enum rc_morrpc_type)t;
	}
	return RC_MORRPC_NONE;
}

const char *rc_morrpc_method_name(enum rc_morrpc_type type)
{
	const struct msgtype *t = type_of(type);
	return t ? t->method : NULL;
}

void rc_morrpc_msg_release(struct rc_morrpc_msg *m)
{
	if (!m)
		return;
	json_decref(m->root);
	memset(m, 0, sizeof *m);
}

/* Load a document and pick out the envelope's "id" (a string or null, as Go's `ID string`). */
static int load_envelope(struct rc_morrpc_msg *m, const char *json, size_t len,
                         struct rc_errinfo *err)
{
	json_error_t je;
	memset(m, 0, sizeof *m);
	if (!json && len)
		return RC_EINVAL;
	m->root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	if (!m->root)
		return set_err(err, RC_EPARSE, (size_t)je.position, "%s", je.text);
	if (!json_is_object(m->root))
		return set_err(err, RC_EPROTO, 0, "%s", "message is not a JSON object");
	const json_t *id = member(m->root, "id");
	if (id && !json_is_null(id)) {
		if (!json_is_string(id))
			return set_err(err, RC_EPROTO, 0, "%s", "\"id\" must be a string");
		m->id = (struct rc_str){json_string_value(id), json_string_length(id)};
	} else {
		m->id = (struct rc_str){"", 0};
	}
	return RC_OK;
}

int rc_morrpc_parse_request(struct rc_morrpc_msg *m, const char *json, size_t len,
                            struct rc_errinfo *err)
{
	if (!m)
		return RC_EINVAL;
	int rc = load_envelope(m, json, len, err);
	if (rc != RC_OK)
		goto fail;
	const json_t *method = member(m->root, "method");
	if (!json_is_string(method)) {
		rc = set_err(err, RC_EPROTO, 0, "%s", "\"method\" must be a string");
		goto fail;
	}
	m->method = (struct rc_str){json_string_value(method), json_string_length(method)};
	m->type = rc_morrpc_method_type(m->method);
	m->params = member(m->root, "params");
	if (!json_is_object(m->params)) {
		rc = set_err(err, RC_EPROTO, 0, "%s", "\"params\" must be an object");
		goto fail;
	}
	return RC_OK;
fail:
	rc_morrpc_msg_release(m);
	return rc;
}

int rc_morrpc_parse_response(struct rc_morrpc_msg *m, const char *json, size_t len,
                             struct rc_errinfo *err)
{
	if (!m)
		return RC_EINVAL;
	int rc = load_envelope(m, json, len, err);
	if (rc != RC_OK)
		goto fail;
	const json_t *result = member(m->root, "result");
	const json_t *error = member(m->root, "error");
	m->result = json_is_null(result) ? NULL : result;
	m->error = json_is_null(error) ? NULL : error;
	if (m->error && !json_is_object(m->error)) {
		rc = set_err(err, RC_EPROTO, 0, "%s", "\"error\" must be an object");
		goto fail;
	}
	if (!m->result && !m->error) {
		rc = set_err(err, RC_EPROTO, 0, "%s", "response has neither result nor error");
		goto fail;
	}
	return RC_OK;
fail:
	rc_morrpc_msg_release(m);
	return rc;
}

/* ---- per-chunk helpers ------------------------------------------------------------------------
 */

/* Encrypt plain into scratch as [blob][hex of blob] and point *hex at the hex text. */
static int seal_blob(struct rc_buf *scratch, const uint8_t user_pub[RC_SECP_PUBKEY_LEN],
                     const uint8_t *plain, size_t len, const uint8_t *eph, const uint8_t *iv,
                     struct rc_str *hex)
{
	if (len > (SIZE_MAX - 3 * RC_ECIES_OVERHEAD) / 3)
		return RC_ERANGE;
	size_t blob_len = len + RC_ECIES_OVERHEAD, n;
	rc_buf_reset(scratch);
	/* Room for blob and hex up front: the hex append below must not move `blob`. */
	int rc = rc_buf_grow(scratch, 3 * blob_len);
	if (rc != RC_OK)
		return rc;
	uint8_t *blob = (uint8_t *)scratch->ptr;
	if (eph && iv)
		rc = rc_ecies_encrypt_fixed(user_pub, plain, len, eph, iv, blob, blob_len, &n);
	else
		rc = rc_ecies_encrypt(user_pub, plain, len, blob, blob_len, &n);
	if (rc != RC_OK)
		return rc;
	rc_buf_setlen(scratch, n);
	if ((rc = rc_buf_append_hex(scratch, blob, n)) != RC_OK)
		return rc;
	*hex = (struct rc_str){scratch->ptr + n, 2 * n};
	return RC_OK;
}

/* A provider response carrying an encrypted payload: a streamed chunk or a signed error. */
static int seal(struct rc_buf *out, struct rc_buf *scratch, struct rc_str id,
                const uint8_t user_pub[RC_SECP_PUBKEY_LEN], const uint8_t *plain, size_t len,
                uint64_t ts, const struct rc_secp_privkey *provider, const uint8_t *eph,
                const uint8_t *iv, int is_error)
{
	struct rc_morrpc_body b;
	if (!out || !scratch || !user_pub || (!plain && len) || !provider)
		return RC_EINVAL;
	memset(&b, 0, sizeof b);
	struct rc_str *message;
	if (is_error) {
		b.type = RC_MORRPC_ERROR;
		b.u.error.code = RC_MORRPC_ERROR_CODE;
		b.u.error.timestamp = ts;
		message = &b.u.error.message;
	} else {
		b.type = RC_MORRPC_PROMPT_RES;
		b.u.prompt_res.timestamp = ts;
		message = &b.u.prompt_res.message;
	}
	int rc = seal_blob(scratch, user_pub, plain, len, eph, iv, message);
	if (rc == RC_OK)
		rc = rc_morrpc_sign(&b, provider, out);
	if (rc == RC_OK)
		rc = rc_morrpc_encode_response(&b, id, out);
	return rc;
}

int rc_morrpc_seal_chunk(struct rc_buf *out, struct rc_buf *scratch, struct rc_str id,
                         const uint8_t user_pub[RC_SECP_PUBKEY_LEN], const uint8_t *plain,
                         size_t len, uint64_t ts, const struct rc_secp_privkey *provider,
                         const uint8_t *eph, const uint8_t *iv)
{
	return seal(out, scratch, id, user_pub, plain, len, ts, provider, eph, iv, 0);
}

int rc_morrpc_seal_error(struct rc_buf *out, struct rc_buf *scratch, struct rc_str id,
                         const uint8_t user_pub[RC_SECP_PUBKEY_LEN], const uint8_t *plain,
                         size_t len, uint64_t ts, const struct rc_secp_privkey *provider,
                         const uint8_t *eph, const uint8_t *iv)
{
	return seal(out, scratch, id, user_pub, plain, len, ts, provider, eph, iv, 1);
}

int rc_morrpc_open_chunk(const struct rc_morrpc_msg *m,
                         const uint8_t provider_pub[RC_SECP_PUBKEY_LEN],
                         const struct rc_secp_privkey *user, struct rc_buf *scratch,
                         struct rc_buf *plain, struct rc_morrpc_body *b, struct rc_errinfo *err)
{
	if (!m || !provider_pub || !user || !scratch || !plain || !b)
		return RC_EINVAL;
	rc_buf_reset(plain);
	int is_err = m->error != NULL;
	int rc = rc_morrpc_decode(b, is_err ? RC_MORRPC_ERROR : RC_MORRPC_PROMPT_RES,
	                          is_err ? m->error : m->result, err);
	if (rc != RC_OK)
		return rc;
	struct rc_str msg = is_err ? b->u.error.message : b->u.prompt_res.message;
	/* §2.5.4: an error whose signature is empty, missing or "0x00" is plain text. */
	if (is_err && b->sig_len != RC_SECP_SIG_LEN)
		return rc_buf_append(plain, msg.ptr, msg.len);
	if ((rc = rc_morrpc_verify(b, provider_pub, scratch)) != RC_OK)
		return set_err(err, rc, 0, "%s", "invalid signature from provider");
	/* Blob bytes in scratch, plaintext in plain: both reused across chunks. */
	size_t n;
	rc_buf_reset(scratch);
	if ((rc = rc_buf_grow(scratch, msg.len / 2 + 1)) != RC_OK)
		return rc;
	if (rc_hex_decode(msg.ptr, msg.len, (uint8_t *)scratch->ptr, msg.len / 2 + 1, &n, NULL))
		return set_err(err, RC_EPROTO, 0, "%s", "\"message\" is not valid hex");
	if (n < RC_ECIES_OVERHEAD)
		return set_err(err, RC_ETRUNC, 0, "%s", "ciphertext shorter than 113 bytes");
	if ((rc = rc_buf_grow(plain, n - RC_ECIES_OVERHEAD)) != RC_OK)
		return rc;
	size_t got;
	rc = rc_ecies_decrypt(user, (const uint8_t *)scratch->ptr, n, (uint8_t *)plain->ptr,
	                      n - RC_ECIES_OVERHEAD, &got, err);
	if (rc != RC_OK)
		return rc;
	rc_buf_setlen(plain, got);
	return RC_OK;
}

int rc_morrpc_is_done(struct rc_str plain)
{
	return plain.len == 8 && memcmp(plain.ptr, "\"[DONE]\"", 8) == 0;
}

/* ---- consumer hot path -------------------------------------------------------------------- */

static int is_lower_hex(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Match the literal lit at *p (advancing it), or fail. */
static int eat(const char **p, const char *end, const char *lit, size_t n)
{
	if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
		return 0;
	*p += n;
	return 1;
}
#define EAT(p, end, lit) eat(p, end, lit, sizeof lit - 1)

/*
 * The canonical form of a streamed chunk, as Go's json.Marshal writes SessionPromptRes inside
 * RpcResponse (§2.2, §2.5.3). Only a text that the general path would read to exactly the same
 * fields is accepted here: plain ASCII id without escapes, lowercase hex message (its Go string
 * escaping is the identity, so the text is also its signed form), a 65-byte lowercase signature
 * and a timestamp of 1..18 digits without a leading zero (within jansson's int64, non-zero as
 * the validator wants). Returns 1 with the pieces, 0 for "not canonical, take the slow path".
 */
struct canon {
	struct rc_str id, msg, ts;
	const char *sig; /* 130 hex digits */
	uint64_t timestamp;
};

static int match_canonical(const char *json, size_t len, struct canon *c)
{
	const char *p = json, *end = json + len, *q;
	if (!EAT(&p, end, "{\"id\":\""))
		return 0;
	for (q = p; q < end && *q != '"'; q++)
		if ((uint8_t)*q < 0x20 || (uint8_t)*q >= 0x80 || *q == '\\')
			return 0;
	c->id = (struct rc_str){p, (size_t)(q - p)};
	p = q;
	if (!EAT(&p, end, "\",\"result\":{\"message\":\""))
		return 0;
	for (q = p; q < end && is_lower_hex((uint8_t)*q); q++)
		;
	c->msg = (struct rc_str){p, (size_t)(q - p)};
	if (c->msg.len == 0 || (c->msg.len & 1))
		return 0;
	p = q;
	if (!EAT(&p, end, "\",\"signature\":\"0x") || end - p < 2 * RC_SECP_SIG_LEN)
		return 0;
	for (int i = 0; i < 2 * RC_SECP_SIG_LEN; i++)
		if (!is_lower_hex((uint8_t)p[i]))
			return 0;
	c->sig = p;
	p += 2 * RC_SECP_SIG_LEN;
	if (!EAT(&p, end, "\",\"timestamp\":") || p >= end || *p < '1' || *p > '9')
		return 0;
	c->timestamp = 0;
	for (q = p; q < end && *q >= '0' && *q <= '9'; q++) {
		if (q - p >= 18)
			return 0;
		c->timestamp = c->timestamp * 10 + (uint64_t)(*q - '0');
	}
	c->ts = (struct rc_str){p, (size_t)(q - p)};
	p = q;
	return EAT(&p, end, "}}") && p == end;
}

static int decrypt_hex(struct rc_str msg, const struct rc_secp_privkey *user,
                       struct rc_buf *scratch, struct rc_buf *plain, struct rc_errinfo *err)
{
	size_t n, got;
	rc_buf_reset(scratch);
	int rc = rc_buf_grow(scratch, msg.len / 2 + 1);
	if (rc != RC_OK)
		return rc;
	if (rc_hex_decode(msg.ptr, msg.len, (uint8_t *)scratch->ptr, msg.len / 2 + 1, &n, NULL))
		return set_err(err, RC_EPROTO, 0, "%s", "\"message\" is not valid hex");
	if (n < RC_ECIES_OVERHEAD)
		return set_err(err, RC_ETRUNC, 0, "%s", "ciphertext shorter than 113 bytes");
	if ((rc = rc_buf_grow(plain, n - RC_ECIES_OVERHEAD)) != RC_OK)
		return rc;
	rc = rc_ecies_decrypt(user, (const uint8_t *)scratch->ptr, n, (uint8_t *)plain->ptr,
	                      n - RC_ECIES_OVERHEAD, &got, err);
	if (rc != RC_OK)
		return rc;
	rc_buf_setlen(plain, got);
	return RC_OK;
}

static int id_differs(struct rc_str got, struct rc_str want)
{
	return want.ptr && (got.len != want.len || memcmp(got.ptr, want.ptr, got.len) != 0);
}

static int open_fast(const struct canon *c, struct rc_str want_id, const uint8_t *provider_pub,
                     const struct rc_secp_privkey *user, struct rc_buf *scratch,
                     struct rc_buf *plain, struct rc_morrpc_chunk_info *info,
                     struct rc_errinfo *err)
{
	uint8_t sig[RC_SECP_SIG_LEN], hash[32];
	struct rc_keccak k;
	info->fast = 1;
	info->type = RC_MORRPC_PROMPT_RES;
	info->timestamp = c->timestamp;
	info->stage = RC_MORRPC_AT_ID;
	if (id_differs(c->id, want_id))
		return set_err(err, RC_EPROTO, 0, "%s", "response id does not match the request");
	info->stage = RC_MORRPC_AT_VERIFY;
	if (rc_hex_decode_exact(c->sig, 2 * RC_SECP_SIG_LEN, sig, sizeof sig, NULL) != RC_OK)
		return set_err(err, RC_ECRYPTO, 0, "%s", "invalid signature from provider");
	/* §2.5.3 signed bytes {"message":"<hex>","timestamp":<ms>}, hashed where they lie. */
	rc_keccak_init(&k);
	rc_keccak_update(&k, "{\"message\":\"", 12);
	rc_keccak_update(&k, c->msg.ptr, c->msg.len);
	rc_keccak_update(&k, "\",\"timestamp\":", 14);
	rc_keccak_update(&k, c->ts.ptr, c->ts.len);
	rc_keccak_update(&k, "}", 1);
	rc_keccak_final(&k, hash);
	if (rc_secp_verify_rs(hash, sig, provider_pub) != RC_OK)
		return set_err(err, RC_ECRYPTO, 0, "%s", "invalid signature from provider");
	info->is_signed = 1;
	info->stage = RC_MORRPC_AT_DECRYPT;
	int rc = decrypt_hex(c->msg, user, scratch, plain, err);
	if (rc == RC_OK)
		info->stage = RC_MORRPC_AT_DONE;
	return rc;
}

int rc_morrpc_open_chunk_bytes(const char *json, size_t len, struct rc_str want_id,
                               const uint8_t provider_pub[RC_SECP_PUBKEY_LEN],
                               const struct rc_secp_privkey *user, struct rc_buf *scratch,
                               struct rc_buf *plain, struct rc_morrpc_chunk_info *info,
                               struct rc_errinfo *err)
{
	struct canon c;
	struct rc_morrpc_msg m;
	struct rc_morrpc_body b;
	if ((!json && len) || !provider_pub || !user || !scratch || !plain || !info)
		return RC_EINVAL;
	memset(info, 0, sizeof *info);
	rc_buf_reset(plain);
	if (json && match_canonical(json, len, &c))
		return open_fast(&c, want_id, provider_pub, user, scratch, plain, info, err);

	info->stage = RC_MORRPC_AT_PARSE;
	int rc = rc_morrpc_parse_response(&m, json, len, err);
	if (rc != RC_OK)
		return rc;
	info->stage = RC_MORRPC_AT_ID;
	if (id_differs(m.id, want_id)) {
		rc = set_err(err, RC_EPROTO, 0, "%s", "response id does not match the request");
		goto out;
	}
	/* Stage by what open_chunk reports: decode errors are RC_EPROTO before any crypto. */
	info->type = m.error ? RC_MORRPC_ERROR : RC_MORRPC_PROMPT_RES;
	info->stage = RC_MORRPC_AT_DECODE;
	rc = rc_morrpc_decode(&b, info->type, m.error ? m.error : m.result, err);
	if (rc != RC_OK)
		goto out;
	info->timestamp =
	        info->type == RC_MORRPC_ERROR ? b.u.error.timestamp : b.u.prompt_res.timestamp;
	if (info->type == RC_MORRPC_ERROR && b.sig_len != RC_SECP_SIG_LEN) {
		info->stage = RC_MORRPC_AT_DONE;
		rc = rc_buf_append(plain, b.u.error.message.ptr, b.u.error.message.len);
		goto out;
	}
	info->stage = RC_MORRPC_AT_VERIFY;
	if ((rc = rc_morrpc_verify(&b, provider_pub, scratch)) != RC_OK) {
		rc = set_err(err, rc, 0, "%s", "invalid signature from provider");
		goto out;
	}
	info->is_signed = 1;
	info->stage = RC_MORRPC_AT_DECRYPT;
	rc = decrypt_hex(info->type == RC_MORRPC_ERROR ? b.u.error.message : b.u.prompt_res.message,
	                 user, scratch, plain, err);
	if (rc == RC_OK)
		info->stage = RC_MORRPC_AT_DONE;
out:
	rc_morrpc_msg_release(&m);
	return rc;
}
