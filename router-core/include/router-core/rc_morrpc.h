/*
 * router-core MOR-RPC message codec: the consumer<->provider messages of morpheus-protocol §2.5,
 * with no sockets. Bytes in (one JSON value, as rc_jsonstream cuts them), typed structs out; typed
 * structs in, canonical signed bytes, signatures and wire bytes out.
 *
 * The one rule that shapes everything (§2.3): a signature covers Go's json.Marshal of the parsed
 * struct with the signature emptied, not the bytes that travelled. So a receiver parses into a
 * typed struct (dropping unknown keys, as Go does), re-serializes canonically and verifies over
 * that; a sender signs the same canonical bytes. Field order, omitempty and the five structs
 * that keep "signature":"0x" in their signed bytes live in one table per message in
 * rc_morrpc.c, transcribed from the Go structs.
 *
 * Messages (struct rc_morrpc_body.type):
 *   PING_REQ     network.ping params      {nonce, signature}             signature kept as "0x"
 *   PONG_RES     its result               {nonce, version?, signature}   signature kept as "0x"
 *   SESSION_REQ  session.request params   {signature?, user, key, spend, timestamp, bidid}
 *   SESSION_RES  its result               {message=provider pubkey, approval, approvalSig, user,
 *                                          timestamp, signature?}
 *   PROMPT_REQ   session.prompt params    {signature?, sessionid, message, timestamp}
 *   PROMPT_RES   each streamed result     {message=hex ECIES blob, signature?, timestamp}
 *   ERROR        RpcError                 {message, code, data:{timestamp, signature}} kept "0x"
 *   REPORT_REQ   session.report params    {signature?, message="0x"+session id, timestamp}
 *   REPORT_RES   its result               {message=receipt, signedReport, signature?, timestamp}
 * ("?" = omitempty; an omitted signature is absent from the signed bytes.)
 *
 * Parsing is stricter than Go where Go is lenient in ways no Go peer exercises (see rc_morrpc.c):
 * hex must be well formed and of the protocol's length, numbers must be JSON integers, spend must
 * fit 256 bits; every rejection is a precise error. Keys match case-insensitively like Go's.
 *
 * Thread-safety: all functions are reentrant; a struct rc_morrpc_msg, a body that borrows from
 * it and the rc_buf scratch buffers belong to one thread at a time. Signing keys are borrowed.
 */
#ifndef RC_MORRPC_H
#define RC_MORRPC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <router-core/rc_buf.h>
#include <router-core/rc_common.h>
#include <router-core/rc_hex.h>
#include <router-core/rc_secp.h>

#define RC_MORRPC_NONCE_MAX 32     /* longest ping nonce accepted (REF sends 8 bytes) */
#define RC_MORRPC_APPROVAL_LEN 128 /* abi.encode(bytes32,uint256,address,uint128) */
#define RC_MORRPC_RECEIPT_LEN 224  /* abi.encode(bytes32,uint256,uint128,4 x uint32) */
#define RC_MORRPC_ERROR_CODE 400   /* the only code the reference sends */

enum rc_morrpc_type {
	RC_MORRPC_NONE = 0,
	RC_MORRPC_PING_REQ,
	RC_MORRPC_PONG_RES,
	RC_MORRPC_SESSION_REQ,
	RC_MORRPC_SESSION_RES,
	RC_MORRPC_PROMPT_REQ,
	RC_MORRPC_PROMPT_RES,
	RC_MORRPC_ERROR,
	RC_MORRPC_REPORT_REQ,
	RC_MORRPC_REPORT_RES,
};

/*
 * A message body. Fixed-size fields are stored in place; struct rc_str fields are borrowed
 * (from the parsed message after rc_morrpc_decode, from the caller when building) and must
 * outlive every call that uses the body. `sig` holds a 65-byte r||s||v signature when sig_len is
 * 65; sig_len 0 means unsigned (and, for ERROR, sig_len 1 with sig[0] == 0 is the "0x00" of
 * unsigned infrastructure errors, §2.5.4). Zero-initialize, set `type`, fill the fields.
 */
struct rc_morrpc_body {
	enum rc_morrpc_type type;
	uint8_t sig[RC_SECP_SIG_LEN];
	uint8_t sig_len;
	union {
		struct {
			uint8_t nonce[RC_MORRPC_NONCE_MAX];
			uint8_t nonce_len;     /* 1..RC_MORRPC_NONCE_MAX */
			struct rc_str version; /* PONG_RES only; empty is omitted */
		} ping;                        /* PING_REQ and PONG_RES */
		struct {
			uint8_t user[RC_SECP_ADDR_LEN];
			uint8_t key[RC_SECP_PUBKEY_LEN]; /* consumer's uncompressed pubkey */
			struct rc_u256 spend;
			uint64_t timestamp; /* ms */
			uint8_t bid_id[32];
		} session_req;
		struct {
			uint8_t provider_key[RC_SECP_PUBKEY_LEN]; /* JSON "message" */
			uint8_t approval[RC_MORRPC_APPROVAL_LEN];
			uint8_t approval_sig[RC_SECP_SIG_LEN]; /* EIP-191, v = 27/28 */
			uint8_t user[RC_SECP_ADDR_LEN];
			uint64_t timestamp;
		} session_res;
		struct {
			uint8_t session_id[32];
			struct rc_str message; /* the OpenAI request JSON text, plaintext */
			uint64_t timestamp;
		} prompt_req;
		struct {
			struct rc_str message; /* lowercase hex of the ECIES blob, no "0x" */
			uint64_t timestamp;
		} prompt_res;
		struct {
			struct rc_str message; /* hex ECIES blob if signed, plain text if not */
			int64_t code;
			uint64_t timestamp;
		} error;
		struct {
			struct rc_str message; /* "0x" + 64 hex: the session id as text */
			uint64_t timestamp;
		} report_req;
		struct {
			uint8_t receipt[RC_MORRPC_RECEIPT_LEN]; /* JSON "message" */
			uint8_t signed_report[RC_SECP_SIG_LEN]; /* EIP-191, v = 27/28 */
			uint64_t timestamp;
		} report_res;
	} u;
};

/* ---- incoming envelopes --------------------------------------------------------------------- */

/*
 * One parsed envelope. Requests: {"id":string,"method":string,"params":object}. Responses:
 * {"id":string,"result":any,"error":object|null}. `root` is owned (jansson reference); every
 * other member borrows from it and lives until rc_morrpc_msg_release().
 */
struct rc_morrpc_msg {
	json_t *root;
	struct rc_str id;
	struct rc_str method;     /* requests */
	enum rc_morrpc_type type; /* requests: from method (RC_MORRPC_NONE if unknown) */
	const json_t *params;     /* requests: the params object */
	const json_t *result;     /* responses: NULL when null or absent */
	const json_t *error;      /* responses: NULL when null or absent */
};

/*
 * Parse one request envelope (len bytes at json, e.g. a value from rc_jsonstream). Unknown
 * methods parse fine with type RC_MORRPC_NONE (answer them with an unsigned error). Returns
 * RC_OK, RC_EPARSE (not JSON, duplicate key, invalid UTF-8; err has the offset and jansson's
 * text) or RC_EPROTO (valid JSON, wrong shape: id not a string, params not an object, ...).
 * On failure *m is released.
 */
int rc_morrpc_parse_request(struct rc_morrpc_msg *m, const char *json, size_t len,
                            struct rc_errinfo *err);

/* As rc_morrpc_parse_request() for a response envelope; RC_EPROTO also when it has neither an
 * object result nor an error object. */
int rc_morrpc_parse_response(struct rc_morrpc_msg *m, const char *json, size_t len,
                             struct rc_errinfo *err);

/* Drop the parsed document. NULL and released messages are fine. */
void rc_morrpc_msg_release(struct rc_morrpc_msg *m);

/* Message type of a request method name ("session.prompt" -> RC_MORRPC_PROMPT_REQ), or
 * RC_MORRPC_NONE. Result types are not methods. */
enum rc_morrpc_type rc_morrpc_method_type(struct rc_str method);

/* The method name of a request type ("network.ping", ...), or NULL for result/error types. */
const char *rc_morrpc_method_name(enum rc_morrpc_type type);

/*
 * Decode obj (params, result or error of a parsed message) as a body of the given type, the way
 * Go's json.Unmarshal fills the struct: keys matched case-insensitively (Go's folding, including
 * U+017F and U+212A), unknown keys ignored, JSON null leaving a string/number/HexString field
 * empty; then the reference's validation (every field present and non-zero, except PONG
 * version and an ERROR's signature). String fields borrow from obj.
 * Returns RC_OK, RC_EPROTO (wrong JSON type, missing field, wrong length; err->text names the
 * field) or RC_EINVAL (type not decodable). The offset in err is 0: jansson keeps no positions.
 */
int rc_morrpc_decode(struct rc_morrpc_body *b, enum rc_morrpc_type type, const json_t *obj,
                     struct rc_errinfo *err);

/* ---- canonical bytes, signatures, wire ------------------------------------------------------ */

/*
 * Append the canonical signed bytes of b to out: Go's json.Marshal of the struct with the
 * signature emptied (§2.3). RC_OK, RC_EINVAL (bad type) or RC_ENOMEM.
 */
int rc_morrpc_signed_bytes(const struct rc_morrpc_body *b, struct rc_buf *out);

/*
 * Sign b in place with k: keccak256 of the signed bytes, secp256k1 RFC 6979, low-S, v = 0/1
 * (go-ethereum crypto.Sign, no EIP-191 prefix); sets sig and sig_len = 65. The signed bytes are
 * built in scratch past its current content, which is left as it was (reuse one buffer per
 * thread: no allocation once it has grown).
 * RC_OK, RC_EINVAL, RC_ENOMEM or RC_ECRYPTO.
 */
int rc_morrpc_sign(struct rc_morrpc_body *b, const struct rc_secp_privkey *k,
                   struct rc_buf *scratch);

/*
 * Verify b's signature against the 65-byte public key pub, as the reference's VerifySignature:
 * exactly 65 signature bytes, low S, v not significant. RC_OK, RC_ECRYPTO (absent, malformed or
 * not by pub), RC_EINVAL or RC_ENOMEM. scratch as for rc_morrpc_sign().
 */
int rc_morrpc_verify(const struct rc_morrpc_body *b, const uint8_t pub[RC_SECP_PUBKEY_LEN],
                     struct rc_buf *scratch);

/*
 * Verify by address recovery, as the reference checks a PONG_RES against the provider's
 * on-chain address (VerifySignatureAddr: v must be 0..3, so 27/28 fail). Same returns.
 */
int rc_morrpc_verify_address(const struct rc_morrpc_body *b, const uint8_t addr[RC_SECP_ADDR_LEN],
                             struct rc_buf *scratch);

/*
 * Append the wire form of a request, {"id":...,"method":...,"params":{...}}, to out (no trailing
 * newline). b must be a request type and, except PING_REQ which has no meaning without one,
 * should be signed first. RC_OK, RC_EINVAL or RC_ENOMEM.
 */
int rc_morrpc_encode_request(const struct rc_morrpc_body *b, struct rc_str id, struct rc_buf *out);

/*
 * Append the wire form of a response to out: {"id":...,"result":{...}} for result types, or
 * {"id":...,"result":null,"error":{...}} for ERROR. RC_OK, RC_EINVAL or RC_ENOMEM.
 */
int rc_morrpc_encode_response(const struct rc_morrpc_body *b, struct rc_str id, struct rc_buf *out);

/* ---- per-chunk helpers (the hot path) ------------------------------------------------------- */

/*
 * Provider: encrypt one response chunk to the consumer's key, sign, and append the wire bytes
 * {"id":...,"result":{"message":<hex>,"signature":...,"timestamp":ts}} to out. With eph/iv NULL
 * the ECIES ephemeral key and IV are fresh random; non-NULL pins them (test vectors only).
 * scratch is overwritten (blob and its hex); out is appended to. Reuse both across chunks: after
 * the first chunks of a stream no call allocates.
 * RC_OK, RC_EINVAL (user_pub invalid), RC_ENOMEM or RC_ECRYPTO.
 */
int rc_morrpc_seal_chunk(struct rc_buf *out, struct rc_buf *scratch, struct rc_str id,
                         const uint8_t user_pub[RC_SECP_PUBKEY_LEN], const uint8_t *plain,
                         size_t len, uint64_t ts, const struct rc_secp_privkey *provider,
                         const uint8_t *eph, const uint8_t *iv);

/*
 * Provider: as rc_morrpc_seal_chunk() for a signed, encrypted backend error (§2.5.4): the
 * plaintext is encrypted into error.message, code 400, and the error is signed.
 */
int rc_morrpc_seal_error(struct rc_buf *out, struct rc_buf *scratch, struct rc_str id,
                         const uint8_t user_pub[RC_SECP_PUBKEY_LEN], const uint8_t *plain,
                         size_t len, uint64_t ts, const struct rc_secp_privkey *provider,
                         const uint8_t *eph, const uint8_t *iv);

/*
 * Consumer: open one streamed response of a session.prompt. m is a parsed response; scratch is
 * overwritten (it ends up holding the ECIES blob). On RC_OK,
 * *b is the decoded body, either PROMPT_RES (a chunk) or ERROR, and plain (reset first) holds:
 * for a chunk or a signed error, the decrypted plaintext; for an unsigned error, its message
 * text. Signed bodies are verified against provider_pub before decryption.
 * Returns RC_OK, RC_EPROTO (malformed body or hex), RC_ECRYPTO (bad signature or MAC),
 * RC_ETRUNC/RC_EPARSE (bad ECIES blob) or RC_ENOMEM.
 */
int rc_morrpc_open_chunk(const struct rc_morrpc_msg *m,
                         const uint8_t provider_pub[RC_SECP_PUBKEY_LEN],
                         const struct rc_secp_privkey *user, struct rc_buf *scratch,
                         struct rc_buf *plain, struct rc_morrpc_body *b, struct rc_errinfo *err);

/* True when a decrypted chunk is the end-of-stream marker, the 8-byte JSON string "[DONE]". */
int rc_morrpc_is_done(struct rc_str plain);

/* Where rc_morrpc_open_chunk_bytes() stopped, so callers can name the failure precisely. */
enum rc_morrpc_stage {
	RC_MORRPC_AT_PARSE = 1, /* not a response envelope (RC_EPARSE / RC_EPROTO) */
	RC_MORRPC_AT_ID,        /* the id differs from want_id (RC_EPROTO) */
	RC_MORRPC_AT_DECODE,    /* body of the wrong shape (RC_EPROTO) */
	RC_MORRPC_AT_VERIFY,    /* signature absent or not by the provider (RC_ECRYPTO) */
	RC_MORRPC_AT_DECRYPT,   /* bad hex, short blob, bad point or MAC (various) */
	RC_MORRPC_AT_DONE,      /* RC_OK */
};

/* What rc_morrpc_open_chunk_bytes() found besides the plaintext. */
struct rc_morrpc_chunk_info {
	enum rc_morrpc_type type; /* RC_MORRPC_PROMPT_RES or RC_MORRPC_ERROR */
	int is_signed;            /* verified (every chunk; an ERROR only if it carried 65 bytes) */
	uint64_t timestamp;       /* ms */
	enum rc_morrpc_stage stage;
	int fast; /* took the jansson-free path (for tests and benchmarks) */
};

/*
 * Consumer, hot path: rc_morrpc_parse_response() + id check + rc_morrpc_open_chunk() on the
 * bytes of one response value (as rc_jsonstream cuts them), with the same results. A response in
 * the exact form json.Marshal writes ({"id":..,"result":{"message":<lowercase hex>,"signature":
 * "0x"+130 hex,"timestamp":N}}) is handled without jansson or copies: the signed bytes are
 * hashed in place and the signature is checked with rc_secp_verify_rs(); anything else goes
 * through the general functions. want_id: {NULL, 0} skips the id check. plain is reset first
 * and holds the decrypted chunk, a signed error's plaintext or an unsigned error's text; scratch
 * is overwritten. Both are reused across calls: no allocation once they have grown.
 * Returns as rc_morrpc_open_chunk(), plus RC_EPARSE/RC_EPROTO from the envelope and RC_EPROTO
 * for a wrong id; info->stage says which step failed.
 */
int rc_morrpc_open_chunk_bytes(const char *json, size_t len, struct rc_str want_id,
                               const uint8_t provider_pub[RC_SECP_PUBKEY_LEN],
                               const struct rc_secp_privkey *user, struct rc_buf *scratch,
                               struct rc_buf *plain, struct rc_morrpc_chunk_info *info,
                               struct rc_errinfo *err);

#endif
