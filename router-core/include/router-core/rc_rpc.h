/*
 * router-core: Ethereum JSON-RPC client over HTTP (libcurl), with batching and failover.
 *
 * A struct rc_rpc holds a list of node URLs, a small pool of reusable curl easy handles (each
 * keeps its connections alive between calls) and a "bad until" time per URL. A request goes to
 * the first URL not currently marked bad; a transport failure (connection refused, timeout,
 * HTTP status other than 2xx, a body that is not JSON-RPC) marks that URL bad for
 * bad_url_ms and the same request is tried on the next URL. When every URL is marked bad they
 * are all tried anyway, in order, so a recovered node is found again. A JSON-RPC error object is
 * an answer, not a transport failure: it never fails over.
 *
 * Errors: RC_OK or a negative code, either from rc_common.h or one of the RC_E* codes below
 * (rc_rpc_strerror() names both). Each call takes an optional struct rc_rpc_error that says
 * more: the node's error code and message, the decoded revert reason of a reverted eth_call /
 * eth_estimateGas / transaction (rc_revert), the HTTP status, the URL that answered.
 *
 * Reply parsing (rc_rpc_parse_reply, rc_rpc_parse_batch) is pure: it takes bytes and returns
 * json values and errors, no I/O; it is fuzzed (tests/fuzz/fuzz_rc_rpc.c).
 *
 * Thread-safety: a struct rc_rpc may be used by many threads at once (handles come from a pool
 * under a mutex; URL health is under the same mutex). Counters are atomic.
 *
 * jansson values cross this API: results are owned out (json_decref them), params are taken.
 */
#ifndef RC_RPC_H
#define RC_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <router-core/rc_buf.h>
#include <router-core/rc_common.h>
#include <router-core/rc_hex.h>

/*
 * Chain-client error codes, kept clear of rc_common.h's block (which only its owner edits).
 * rc_rpc_strerror() knows them and falls back to rc_strerror() for the rest.
 */
enum rc_rpc_errcode {
	RC_ERPC = -100,         /* the node answered with a JSON-RPC error (code/message in err) */
	RC_EREVERT = -101,      /* execution reverted; err->revert_* hold the decoded reason */
	RC_ENONCE = -102,       /* nonce too low / already used */
	RC_EUNDERPRICED = -103, /* replacement transaction underpriced / fee too low */
	RC_EKNOWN = -104,       /* the node already has this exact transaction */
	RC_EFUNDS = -105,       /* insufficient funds for gas * price + value */
	RC_ECHAINID = -106,     /* the node's chain id is not the configured one */
	RC_ETXFAILED = -107     /* a mined transaction has status 0 (reason in err if replayable) */
};

/* Name of any router-core error code, including the chain-client ones. Never NULL. */
const char *rc_rpc_strerror(int rc);

/* Everything known about a failure. Plain data (copyable); zero it or let the call fill it. */
struct rc_rpc_error {
	int rc;            /* the code the call returned */
	long code;         /* JSON-RPC error code; 0 when the failure was not a JSON-RPC error */
	long http_status;  /* last HTTP status seen, 0 if none */
	char message[256]; /* the node's message or a transport description, printable */
	char url[160];     /* scheme://host:port of the URL that answered last (path and
	                      user:password@ left out: they may hold an API key) */
	bool has_revert;   /* revert data was found and decoded */
	uint32_t revert_selector;
	const char *revert_name;  /* static string ("SessionTooShort", "Error", ...) or NULL */
	char revert_text[256];    /* rc_revert's one-line text, e.g. "ProviderStakeTooLow(1, 2)" */
	uint8_t revert_data[512]; /* raw revert bytes (truncated to 512) */
	size_t revert_len;
};

/* Client settings. Zero fields take the defaults in brackets. */
struct rc_rpc_options {
	const char *const *urls; /* http(s) node URLs, in order of preference; copied */
	size_t nurls;            /* >= 1 */
	long connect_timeout_ms; /* TCP/TLS connect timeout [3000] */
	long timeout_ms;         /* whole-request timeout [15000] */
	long bad_url_ms;         /* how long a failed URL is skipped [30000] */
	size_t max_reply_bytes;  /* larger replies are a transport failure [32 MiB] */
};

struct rc_rpc;

/* New client (curl_global_init happens once, on first use). RC_OK, RC_EINVAL (no URL, a URL
 * that is not http:// or https://) or RC_ENOMEM. *out owned: free with rc_rpc_free(). */
int rc_rpc_new(const struct rc_rpc_options *o, struct rc_rpc **out);
void rc_rpc_free(struct rc_rpc *c);

/* HTTP round trips made so far (a batch counts once; failover retries count each). */
uint64_t rc_rpc_round_trips(const struct rc_rpc *c);

/* ---- raw calls ---------------------------------------------------------------------------- */

/*
 * One call: method with params (a JSON array, taken even on error; NULL means []). On RC_OK
 * *result is owned out (may be json null, e.g. a receipt not yet mined). Errors: transport
 * (RC_EIO, RC_ETIMEOUT, RC_EPROTO after every URL failed), node errors (RC_ERPC, RC_EREVERT,
 * RC_ENONCE, ...), RC_ENOMEM.
 */
int rc_rpc_call(struct rc_rpc *c, const char *method, json_t *params, json_t **result,
                struct rc_rpc_error *err);

/* One entry of a batch. Fill method and params (taken by rc_rpc_batch); read rc/result/err. */
struct rc_rpc_req {
	const char *method; /* borrowed, must outlive the call */
	json_t *params;     /* taken (set to NULL by the call) */
	json_t *result;     /* owned out on rc == RC_OK: json_decref it (rc_rpc_reqs_release) */
	int rc;
	struct rc_rpc_error err;
};

/*
 * n calls in one HTTP round trip (a JSON-RPC batch). Returns RC_OK when the batch itself went
 * through and every entry got an answer; each reqs[i].rc then says how that call went. Returns a
 * transport error (and sets every reqs[i].rc to it) otherwise. n == 0 is RC_OK with no I/O.
 */
int rc_rpc_batch(struct rc_rpc *c, struct rc_rpc_req *reqs, size_t n, struct rc_rpc_error *err);

/* json_decref every result and params left in reqs[0..n). */
void rc_rpc_reqs_release(struct rc_rpc_req *reqs, size_t n);

/* ---- pure reply parsing (no I/O; fuzzed) --------------------------------------------------- */

/*
 * Parse a single JSON-RPC 2.0 reply whose id must be `id`. RC_OK and *result owned out, or the
 * node's error mapped to a code (see rc_rpc_map_error), or RC_EPROTO (not JSON, not an object,
 * wrong id, neither result nor error; err->message says which).
 */
int rc_rpc_parse_reply(const char *body, size_t len, uint64_t id, json_t **result,
                       struct rc_rpc_error *err);

/*
 * Parse a batch reply for reqs[0..n) that were sent with ids first_id..first_id+n-1. Answers
 * may come in any order. RC_OK when every request found its answer (their rc/result/err are
 * set), RC_EPROTO otherwise (reqs whose answer was missing get RC_EPROTO).
 */
int rc_rpc_parse_batch(const char *body, size_t len, uint64_t first_id, struct rc_rpc_req *reqs,
                       size_t n, struct rc_rpc_error *err);

/*
 * Map a JSON-RPC error object {code, message, data} to a code and fill err: revert data found in
 * `data` (hex string, or an object with a hex "data" member) gives RC_EREVERT with the decoded
 * reason; messages about nonces, underpriced replacements, known transactions and funds give
 * RC_ENONCE, RC_EUNDERPRICED, RC_EKNOWN, RC_EFUNDS; "execution reverted" without data gives
 * RC_EREVERT with an empty revert; anything else RC_ERPC.
 */
int rc_rpc_map_error(const json_t *error, struct rc_rpc_error *err);

/* ---- typed Ethereum methods ---------------------------------------------------------------- */

/* Result helpers for raw/batch results: a hex quantity that fits 64 bits, a u256, hex bytes. */
int rc_rpc_result_u64(const json_t *result, uint64_t *out);
int rc_rpc_result_u256(const json_t *result, struct rc_u256 *out);
int rc_rpc_result_bytes(const json_t *result, struct rc_buf *out); /* appends to out */

/* Fill req for eth_call {to, data} at "latest" (for batches). RC_OK or RC_ENOMEM. */
int rc_rpc_req_eth_call(struct rc_rpc_req *req, const uint8_t to[20], const uint8_t *data,
                        size_t len);

int rc_rpc_chain_id(struct rc_rpc *c, uint64_t *out, struct rc_rpc_error *err);
int rc_rpc_block_number(struct rc_rpc *c, uint64_t *out, struct rc_rpc_error *err);
int rc_rpc_get_balance(struct rc_rpc *c, const uint8_t addr[20], struct rc_u256 *out,
                       struct rc_rpc_error *err);
/* eth_getTransactionCount(addr, pending ? "pending" : "latest"). */
int rc_rpc_get_tx_count(struct rc_rpc *c, const uint8_t addr[20], bool pending, uint64_t *out,
                        struct rc_rpc_error *err);
int rc_rpc_max_priority_fee(struct rc_rpc *c, struct rc_u256 *out, struct rc_rpc_error *err);

/* eth_call {from?, to, data} at "latest"; the return data is appended to out. A revert gives
 * RC_EREVERT with the reason decoded in err. from may be NULL. */
int rc_rpc_eth_call(struct rc_rpc *c, const uint8_t *from, const uint8_t to[20],
                    const uint8_t *data, size_t len, struct rc_buf *out, struct rc_rpc_error *err);

/* A transaction shape for eth_estimateGas (and revert replays). to NULL = creation. */
struct rc_rpc_callmsg {
	const uint8_t *from; /* 20 bytes or NULL */
	const uint8_t *to;   /* 20 bytes or NULL */
	struct rc_u256 value;
	const uint8_t *data;
	size_t data_len;
};
int rc_rpc_estimate_gas(struct rc_rpc *c, const struct rc_rpc_callmsg *m, uint64_t *gas,
                        struct rc_rpc_error *err);

/* eth_sendRawTransaction; the node's transaction hash into hash (may be NULL). */
int rc_rpc_send_raw(struct rc_rpc *c, const uint8_t *raw, size_t len, uint8_t hash[32],
                    struct rc_rpc_error *err);

/* One log entry. data is owned by the enclosing receipt or log list. */
struct rc_rpc_log {
	uint8_t address[20];
	size_t ntopics; /* 0..4 */
	uint8_t topics[4][32];
	uint8_t *data;
	size_t data_len;
	uint64_t block_number;
	uint8_t tx_hash[32];
	uint64_t log_index;
};

/* A transaction receipt. Release with rc_rpc_receipt_release(). */
struct rc_rpc_receipt {
	uint8_t tx_hash[32];
	uint64_t block_number;
	bool status; /* true: success */
	uint64_t gas_used;
	struct rc_u256 effective_gas_price;
	struct rc_rpc_log *logs; /* owned */
	size_t nlogs;
};
void rc_rpc_receipt_release(struct rc_rpc_receipt *r);

/* eth_getTransactionReceipt: RC_OK with *found false (receipt zeroed) while not mined. */
int rc_rpc_get_receipt(struct rc_rpc *c, const uint8_t hash[32], bool *found,
                       struct rc_rpc_receipt *r, struct rc_rpc_error *err);

/* Parse a receipt JSON object (pure). RC_OK, RC_EPARSE or RC_ENOMEM. */
int rc_rpc_parse_receipt(const json_t *obj, struct rc_rpc_receipt *r);
/* Parse one log JSON object (pure); data is malloc'd (free it, or let a receipt own it). */
int rc_rpc_parse_log(const json_t *obj, struct rc_rpc_log *l);

/* eth_getLogs filter. A topic slot with has_topic[i] false matches anything. */
struct rc_rpc_log_filter {
	uint64_t from_block, to_block; /* to_block UINT64_MAX = "latest" */
	const uint8_t *address;        /* 20 bytes or NULL */
	size_t ntopics;                /* 0..4 */
	bool has_topic[4];
	uint8_t topics[4][32];
};
/* eth_getLogs: *logs owned out (free with rc_rpc_logs_free(logs, n)). */
int rc_rpc_get_logs(struct rc_rpc *c, const struct rc_rpc_log_filter *f, struct rc_rpc_log **logs,
                    size_t *n, struct rc_rpc_error *err);
void rc_rpc_logs_free(struct rc_rpc_log *logs, size_t n);

/* eth_feeHistory(blocks, "latest", [percentile]): the base fee of the next block and the mean
 * of the per-block rewards at that percentile (0 if the node reports none). */
struct rc_rpc_fee_history {
	struct rc_u256 next_base_fee;
	struct rc_u256 reward;
	uint64_t oldest_block;
	size_t blocks;
};
int rc_rpc_fee_history(struct rc_rpc *c, unsigned blocks, double percentile,
                       struct rc_rpc_fee_history *out, struct rc_rpc_error *err);

#endif
