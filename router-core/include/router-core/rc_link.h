/*
 * router-core consumer link: one MOR-RPC exchange with a provider over TCP (morpheus-protocol
 * §2.1-§2.5), as the gateway needs it.
 *
 * Each call dials the provider's endpoint (the "host:port" of its on-chain record; IPv4, IPv6 in
 * brackets or a host name), writes ONE signed request (no trailing newline), then reads the
 * back-to-back JSON responses as they arrive and checks every one of them:
 *   - rc_link_handshake()  session.request -> SessionRes, verified with the provider key it
 *                          carries (which must be a valid uncompressed 0x04 point); gives back
 *                          that key and the approval + approvalSig for openSession;
 *   - rc_link_prompt()     session.prompt -> a stream of SessionPromptRes, each verified against
 *                          the provider key from the handshake, decrypted (ECIES to the user key)
 *                          and handed to a callback as it arrives, until "[DONE]" or EOF;
 *   - rc_link_report()     session.report -> the signed receipt for closeSession;
 *   - rc_link_ping()       network.ping -> pong, optionally checked against the provider address.
 * A provider that lies (bad signature, garbage bytes, a truncated or oversize value, a wrong
 * response id, a key that is not uncompressed, a signed or unsigned error) is reported as a
 * return code plus a struct rc_link_err naming the reason, never a crash.
 *
 * Timeouts are poll()-based on nonblocking sockets: dial (connect, per call), first response
 * (request written -> first byte back), idle (between reads once the answer has started).
 * Name resolution is getaddrinfo() and is not bounded by the dial timeout.
 *
 * Cancellation: rc_link_cancel() may be called from any thread (it writes an eventfd the I/O
 * loop polls) and makes the call in flight, and every later call, fail with
 * RC_LINK_CANCELLED until rc_link_uncancel(). opts.cancel_fd adds a caller-owned fd: when it
 * becomes readable (or hangs up) the call in flight is cancelled the same way.
 *
 * The bytes-in -> events-out part is exposed as struct rc_link_reader, with no I/O, so that it
 * can be unit-tested and fuzzed: the socket loop only feeds it.
 *
 * Thread-safety: a struct rc_link serializes its calls (a mutex: one request at a time per
 * link); use one link per concurrent stream. rc_link_cancel() is safe from any thread and from a
 * signal handler. A struct rc_link_reader belongs to one thread.
 */
#ifndef RC_LINK_H
#define RC_LINK_H

#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_buf.h>
#include <router-core/rc_common.h>
#include <router-core/rc_hex.h>
#include <router-core/rc_jsonstream.h>
#include <router-core/rc_morrpc.h>
#include <router-core/rc_secp.h>

/* Why a call failed; rc_link_reason_name() gives a stable lowercase name for logs. */
enum rc_link_reason {
	RC_LINK_OK = 0,
	RC_LINK_BAD_ARGS,       /* the caller broke the contract (RC_EINVAL) */
	RC_LINK_BAD_ENDPOINT,   /* endpoint text is not host:port (RC_EINVAL) */
	RC_LINK_RESOLVE,        /* host name did not resolve (RC_ENOTFOUND) */
	RC_LINK_DIAL,           /* connect refused / unreachable (RC_EIO) */
	RC_LINK_DIAL_TIMEOUT,   /* connect did not finish in time (RC_ETIMEOUT) */
	RC_LINK_SEND,           /* writing the request failed (RC_EIO) */
	RC_LINK_FIRST_TIMEOUT,  /* nothing came back in time (RC_ETIMEOUT) */
	RC_LINK_IDLE_TIMEOUT,   /* the answer stalled mid-stream (RC_ETIMEOUT) */
	RC_LINK_RECV,           /* reading failed, e.g. connection reset (RC_EIO) */
	RC_LINK_CANCELLED,      /* rc_link_cancel(), opts.cancel_fd or the callback (RC_EIO) */
	RC_LINK_CLOSED_EARLY,   /* EOF before any response (RC_EPROTO) */
	RC_LINK_TRUNCATED,      /* EOF inside a response value (RC_ETRUNC) */
	RC_LINK_GARBAGE,        /* bytes that are not JSON (RC_EPARSE) */
	RC_LINK_OVERSIZE,       /* a response longer than max_value or too deep (RC_ERANGE) */
	RC_LINK_BAD_MESSAGE,    /* JSON of the wrong shape, bad field (RC_EPROTO) */
	RC_LINK_WRONG_ID,       /* response id differs from the request id (RC_EPROTO) */
	RC_LINK_BAD_KEY,        /* provider key not a valid uncompressed point (RC_ECRYPTO) */
	RC_LINK_BAD_SIGNATURE,  /* signature missing or not by the provider (RC_ECRYPTO) */
	RC_LINK_BAD_CIPHERTEXT, /* ECIES blob malformed or MAC mismatch (RC_ECRYPTO/ETRUNC/EPARSE)
	                         */
	RC_LINK_MISMATCH,       /* a signed answer about another user/bid/nonce (RC_EPROTO) */
	RC_LINK_PROVIDER_ERROR, /* the provider answered with an error (RC_EPROTO); see below */
	RC_LINK_NOMEM,          /* allocation failed (RC_ENOMEM) */
};

/*
 * Detail of a failure. rc is the RC_E* code the call returned. For RC_LINK_PROVIDER_ERROR,
 * `signed_error` tells whether it was a verified, decrypted backend error (its plaintext JSON,
 * e.g. {"providerModelError":...}, went to the chunk callback as RC_LINK_CHUNK_ERROR and is also
 * in text, cut to fit) or an unsigned infrastructure error (its message, e.g. "no capacity", is
 * in text). offset is the stream offset of the offending byte when the reason is about bytes.
 */
struct rc_link_err {
	int rc;
	enum rc_link_reason reason;
	int signed_error;
	uint64_t offset;
	char text[256]; /* lowercase, no full stop; NUL-terminated */
};

/* Stable name of a reason ("bad_signature", ...); never NULL. */
const char *rc_link_reason_name(enum rc_link_reason r);

/* What a chunk callback receives. */
enum rc_link_chunk {
	RC_LINK_CHUNK_DATA = 1, /* one decrypted response chunk (e.g. an OpenAI chunk object) */
	RC_LINK_CHUNK_ERROR, /* decrypted plaintext of a signed provider error; call fails next */
};

/*
 * Called once per verified, decrypted chunk, in order, from the calling thread. data is valid
 * only during the call (the buffer is reused for the next chunk). The end marker "[DONE]" is not
 * passed. Return 0 to go on, non-zero to stop: the call then fails with RC_LINK_CANCELLED.
 */
typedef int (*rc_link_chunk_fn)(void *ud, enum rc_link_chunk kind, const uint8_t *data, size_t len);

/* Options; zero fields take the defaults shown. Copied by rc_link_new(). */
struct rc_link_opts {
	int dial_timeout_ms;  /* 3000 (the reference's dial timeout) */
	int first_timeout_ms; /* 90000 (CNODE_PNODE_TIMEOUT) */
	int idle_timeout_ms;  /* 90000; < 0 disables */
	size_t max_value;     /* longest single response accepted, bytes: 16 MiB */
	int cancel_fd;        /* caller-owned fd whose readability cancels; 0 or -1: none.
	                         (fd 0 is therefore never watched) */
};

/* Handshake result: what openSession needs. */
struct rc_link_session {
	uint8_t provider_key[RC_SECP_PUBKEY_LEN]; /* validated 0x04||X||Y */
	uint8_t approval[RC_MORRPC_APPROVAL_LEN];
	uint8_t approval_sig[RC_SECP_SIG_LEN]; /* EIP-191, v = 27/28 */
	uint8_t user[RC_SECP_ADDR_LEN];
	uint64_t timestamp; /* ms, of the provider's reply */
};

/* session.report result: what closeSession needs. */
struct rc_link_receipt {
	uint8_t receipt[RC_MORRPC_RECEIPT_LEN];
	uint8_t signed_report[RC_SECP_SIG_LEN]; /* EIP-191, v = 27/28 */
	uint64_t timestamp;
};

/* Summary of a finished prompt. */
struct rc_link_stream {
	uint64_t chunks;   /* data chunks delivered */
	uint64_t bytes;    /* plaintext bytes delivered */
	int done;          /* "[DONE]" seen (else the provider just closed, which is allowed) */
	uint64_t first_ms; /* request written -> first verified chunk, ms */
};

struct rc_link;

/*
 * A link to the provider at endpoint ("host:port", "[v6]:port"), acting for the user key k
 * (copied into the link and wiped by rc_link_free()). opts may be NULL. Allocates an eventfd for
 * cancellation; no connection is made yet. Returns NULL on bad arguments or out of resources.
 */
struct rc_link *rc_link_new(const char *endpoint, const struct rc_secp_privkey *k,
                            const struct rc_link_opts *opts);

/* Close and free (wiping the key). NULL is fine. Must not race a call in flight. */
void rc_link_free(struct rc_link *l);

/* Set the provider key for prompt/report without a handshake (e.g. one stored from an earlier
 * handshake, §2.6). The key must be a valid uncompressed point: RC_OK or RC_ECRYPTO. */
int rc_link_set_provider_key(struct rc_link *l, const uint8_t pub[RC_SECP_PUBKEY_LEN]);

/* Cancel the call in flight and every later one (sticky). Thread- and signal-safe. */
void rc_link_cancel(struct rc_link *l);

/* Clear a cancellation so the link can be used again. */
void rc_link_uncancel(struct rc_link *l);

/*
 * session.request for bid_id with spend (wei; NULL = 0) at timestamp ts_ms (0 = now). id is the
 * request id (empty = 8 random lowercase hex digits). On RC_OK *out holds the verified answer
 * and the link remembers out->provider_key for later prompts and reports.
 * Returns RC_OK or the RC_E* code of err->reason (see enum rc_link_reason).
 */
int rc_link_handshake(struct rc_link *l, struct rc_str id, const uint8_t bid_id[32],
                      const struct rc_u256 *spend, uint64_t ts_ms, struct rc_link_session *out,
                      struct rc_link_err *err);

/*
 * session.prompt for session_id with the request JSON text message (sent as a plaintext JSON
 * string, §2.5.3) at ts_ms (0 = now). Every chunk goes to cb as it arrives; out (may be NULL)
 * gets the summary. Needs the provider key (handshake or rc_link_set_provider_key()).
 * RC_OK when the stream ended with "[DONE]" or with EOF after at least one chunk.
 */
int rc_link_prompt(struct rc_link *l, struct rc_str id, const uint8_t session_id[32],
                   struct rc_str message, uint64_t ts_ms, rc_link_chunk_fn cb, void *ud,
                   struct rc_link_stream *out, struct rc_link_err *err);

/* session.report for session_id at ts_ms (0 = now); the receipt is verified against the provider
 * key (handshake or rc_link_set_provider_key()). */
int rc_link_report(struct rc_link *l, struct rc_str id, const uint8_t session_id[32],
                   uint64_t ts_ms, struct rc_link_receipt *out, struct rc_link_err *err);

/*
 * network.ping with a fresh 8-byte nonce (id "0", as the reference). The pong must echo the
 * nonce; if provider_addr is non-NULL it must also be signed by that address (recovery, v 0/1).
 * version (may be NULL, cap bytes) gets the pong's version string, cut to fit.
 */
int rc_link_ping(struct rc_link *l, const uint8_t provider_addr[RC_SECP_ADDR_LEN], char *version,
                 size_t cap, struct rc_link_err *err);

/* ---- the pure part: response bytes in, verified events out --------------------------------- */

enum rc_link_op {
	RC_LINK_OP_PING = 1,
	RC_LINK_OP_HANDSHAKE,
	RC_LINK_OP_PROMPT,
	RC_LINK_OP_REPORT,
};

/* What the reader checks against; every pointer is borrowed for the reader's lifetime. */
struct rc_link_expect {
	enum rc_link_op op;
	struct rc_str id;                   /* responses must echo it; {NULL,0}: not checked */
	const struct rc_secp_privkey *user; /* PROMPT: decrypts chunks */
	const uint8_t *user_addr;           /* HANDSHAKE: echoed user and approval user */
	const uint8_t *bid_id;              /* HANDSHAKE: approval bid id (NULL: not checked) */
	const uint8_t *provider_pub;        /* PROMPT, REPORT: 65-byte validated key */
	const uint8_t *provider_addr;       /* PING: signer (NULL: not checked) */
	const uint8_t *nonce;               /* PING: nonce to echo */
	size_t nonce_len;
	size_t max_value;          /* 0: 16 MiB */
	rc_link_chunk_fn on_chunk; /* PROMPT (may be NULL) */
	void *ud;
};

/*
 * Incremental response processor. Caller-allocated: rc_link_reader_init() ... _release().
 * Public fields are results; the rest is private.
 */
struct rc_link_reader {
	struct rc_link_expect x;
	int done; /* a terminal response was processed: stop reading, ignore what follows */
	struct rc_link_stream stream;   /* PROMPT */
	struct rc_link_session session; /* HANDSHAKE */
	struct rc_link_receipt receipt; /* REPORT */
	char version[64];               /* PING: pong version, cut to fit */
	/* private */
	struct rc_jsonstream js;
	struct rc_buf scratch, plain;
	int err_rc;
	uint64_t values;
	struct rc_link_err last; /* the sticky failure, repeated by later calls */
};

/* Prepare r for the responses to one request. RC_OK or RC_EINVAL. */
int rc_link_reader_init(struct rc_link_reader *r, const struct rc_link_expect *x);

/* Free the reader's buffers (wiping the plaintext). NULL is fine. */
void rc_link_reader_release(struct rc_link_reader *r);

/*
 * Process len bytes received. Complete responses are verified and acted on (PROMPT chunks go to
 * on_chunk); bytes after the terminal response are ignored. Returns RC_OK (check r->done) or an
 * error with err filled; errors are sticky.
 */
int rc_link_reader_feed(struct rc_link_reader *r, const char *data, size_t len,
                        struct rc_link_err *err);

/*
 * The provider closed the connection. RC_OK if the exchange is complete (a terminal response,
 * or for PROMPT at least one chunk); else RC_LINK_CLOSED_EARLY or RC_LINK_TRUNCATED.
 */
int rc_link_reader_end(struct rc_link_reader *r, struct rc_link_err *err);

#endif
