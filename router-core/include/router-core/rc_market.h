/*
 * router-core: Morpheus marketplace bindings (morpheus-protocol §3) over rc_rpc + rc_abi.
 *
 * A struct rc_market names a Diamond and a MOR token on one struct rc_rpc (borrowed; it must
 * outlive the market). Views are eth_call at "latest"; writes go through a struct rc_txm
 * (borrowed per call) and wait for the receipt. Struct readers decode the §3.3 layouts with the
 * type strings of rc_morpheus.h; a reply that does not decode is RC_EPROTO (the node, not the
 * caller, is at fault). Reverts come back as RC_EREVERT with the custom error decoded in
 * err->revert_name (rc_revert, §3.5).
 *
 * Provider discovery (rc_market_discover) uses JSON-RPC batches: one round trip for the
 * model-level reads and the first page of bid ids, one for every bid, one for every distinct
 * provider (its record and its provider-model stats): 3 round trips up to 255 bids.
 *
 * Strings from the chain (endpoint, model name, tags) are copied into fixed-size fields and
 * truncated if longer (the *_truncated flags say so); they are untrusted bytes, not sanitized.
 *
 * Thread-safety: a struct rc_market is immutable after rc_market_new() except for the allowance
 * mutex; all functions may be called concurrently.
 */
#ifndef RC_MARKET_H
#define RC_MARKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_hex.h>
#include <router-core/rc_rpc.h>
#include <router-core/rc_txm.h>

/* §3.3 Bid. Active <=> created_at != 0 && deleted_at == 0. An unknown id reads as all zeros. */
struct rc_bid {
	uint8_t id[32];
	uint8_t provider[20];
	uint8_t model_id[32];
	struct rc_u256 price_per_second; /* wei of MOR per second */
	struct rc_u256 nonce;
	uint64_t created_at, deleted_at;
};

struct rc_provider {
	uint8_t address[20];
	char endpoint[256]; /* "host:port", NUL-terminated */
	bool endpoint_truncated;
	struct rc_u256 stake;
	uint64_t created_at, limit_period_end;
	struct rc_u256 limit_period_earned;
	bool is_deleted;
};

#define RC_MARKET_MAX_TAGS 16
struct rc_model {
	uint8_t id[32];
	uint8_t ipfs_cid[32];
	struct rc_u256 fee, stake;
	uint8_t owner[20];
	char name[128];
	size_t ntags; /* tags kept (at most RC_MARKET_MAX_TAGS) */
	char tags[RC_MARKET_MAX_TAGS][64];
	bool truncated; /* name, a tag or the tag list was cut */
	uint64_t created_at;
	bool is_deleted;
};

struct rc_sd {
	int64_t mean, sq_sum;
};

struct rc_provider_model_stats {
	struct rc_sd tps_scaled1000, ttft_ms;
	uint32_t total_duration, success_count, total_count;
};

struct rc_model_stats {
	struct rc_sd tps_scaled1000, ttft_ms, total_duration;
	uint32_t count;
};

/* §3.3 Session. found is false for the all-zero record of an unknown id (trap 12). */
struct rc_session_info {
	bool found;
	uint8_t id[32];
	uint8_t user[20];
	uint8_t bid_id[32];
	struct rc_u256 stake;
	uint64_t closeout_type;
	struct rc_u256 provider_withdrawn;
	uint64_t opened_at, ends_at, closed_at; /* seconds */
	bool is_active, is_direct_payment;
	size_t closeout_receipt_len; /* the receipt bytes themselves are not kept */
};

struct rc_market;

/* New market over rpc for these addresses. RC_OK or RC_ENOMEM. */
int rc_market_new(struct rc_rpc *rpc, const uint8_t diamond[20], const uint8_t mor[20],
                  struct rc_market **out);
void rc_market_free(struct rc_market *m);
struct rc_rpc *rc_market_rpc(const struct rc_market *m);

/* ---- views (one eth_call each) ---------------------------------------------------------- */

/* Paged id lists: *ids owned out (free()), *n ids, *total the full length (§3.2 pagination). */
int rc_market_model_active_bids(struct rc_market *m, const uint8_t model_id[32], uint64_t offset,
                                uint64_t limit, uint8_t (**ids)[32], size_t *n, uint64_t *total,
                                struct rc_rpc_error *err);
int rc_market_active_model_ids(struct rc_market *m, uint64_t offset, uint64_t limit,
                               uint8_t (**ids)[32], size_t *n, uint64_t *total,
                               struct rc_rpc_error *err);
int rc_market_user_sessions(struct rc_market *m, const uint8_t user[20], uint64_t offset,
                            uint64_t limit, uint8_t (**ids)[32], size_t *n, uint64_t *total,
                            struct rc_rpc_error *err);

int rc_market_get_bid(struct rc_market *m, const uint8_t id[32], struct rc_bid *out,
                      struct rc_rpc_error *err);
int rc_market_get_provider(struct rc_market *m, const uint8_t addr[20], struct rc_provider *out,
                           struct rc_rpc_error *err);
int rc_market_get_model(struct rc_market *m, const uint8_t id[32], struct rc_model *out,
                        struct rc_rpc_error *err);
int rc_market_get_model_stats(struct rc_market *m, const uint8_t model_id[32],
                              struct rc_model_stats *out, struct rc_rpc_error *err);
int rc_market_get_provider_model_stats(struct rc_market *m, const uint8_t model_id[32],
                                       const uint8_t provider[20],
                                       struct rc_provider_model_stats *out,
                                       struct rc_rpc_error *err);
int rc_market_get_session(struct rc_market *m, const uint8_t id[32], struct rc_session_info *out,
                          struct rc_rpc_error *err);

/* uint256 views. ts is unix seconds (uint128 on chain). */
int rc_market_total_mor_supply(struct rc_market *m, uint64_t ts, struct rc_u256 *out,
                               struct rc_rpc_error *err);
int rc_market_todays_budget(struct rc_market *m, uint64_t ts, struct rc_u256 *out,
                            struct rc_rpc_error *err);
int rc_market_provider_min_stake(struct rc_market *m, struct rc_u256 *out,
                                 struct rc_rpc_error *err);
int rc_market_model_min_stake(struct rc_market *m, struct rc_u256 *out, struct rc_rpc_error *err);
int rc_market_bid_fee(struct rc_market *m, struct rc_u256 *out, struct rc_rpc_error *err);
/* getModelId(owner, baseModelId): the id modelRegister gives a model. */
int rc_market_model_id(struct rc_market *m, const uint8_t owner[20], const uint8_t base_id[32],
                       uint8_t out[32], struct rc_rpc_error *err);

/* MOR ERC-20 views. */
int rc_market_mor_balance(struct rc_market *m, const uint8_t owner[20], struct rc_u256 *out,
                          struct rc_rpc_error *err);
int rc_market_mor_allowance(struct rc_market *m, const uint8_t owner[20], const uint8_t spender[20],
                            struct rc_u256 *out, struct rc_rpc_error *err);

/* ---- session stake (§3.6.1) ------------------------------------------------------------- */

/*
 * Pure: cost = price x duration; staked: amount = supply x cost / budget (truncating, big-int);
 * direct: amount = cost. RC_OK, RC_ERANGE (overflow, or budget 0 for a staked session).
 */
int rc_market_stake_amount(const struct rc_u256 *supply, const struct rc_u256 *budget,
                           const struct rc_u256 *price_per_second, uint64_t duration_s, bool direct,
                           struct rc_u256 *out);

/* Live: totalMORSupply(now) and getTodaysBudget(now) in one batched round trip, then the rule
 * above. now 0 = the current time. */
int rc_market_session_stake(struct rc_market *m, const struct rc_u256 *price_per_second,
                            uint64_t duration_s, bool direct, uint64_t now, struct rc_u256 *out,
                            struct rc_rpc_error *err);

/* ---- provider discovery (batched) ------------------------------------------------------- */

struct rc_market_offer {
	struct rc_bid bid;
	struct rc_provider provider;
	struct rc_provider_model_stats stats;
};

struct rc_market_discovery {
	struct rc_model model;
	struct rc_model_stats model_stats;
	struct rc_u256 total_supply, todays_budget, provider_min_stake;
	uint64_t total_bids;
	size_t noffers;
	struct rc_market_offer *offers; /* owned: rc_market_discovery_release() */
	uint64_t round_trips;           /* HTTP round trips this discovery took */
};

/* All active bids of model_id, with their providers and stats and the model-level numbers the
 * ranking (§3.8) needs. now 0 = current time. */
int rc_market_discover(struct rc_market *m, const uint8_t model_id[32], uint64_t now,
                       struct rc_market_discovery *out, struct rc_rpc_error *err);
void rc_market_discovery_release(struct rc_market_discovery *d);

/* Models with their records, batched (for listings): *models owned out (free()). */
int rc_market_list_models(struct rc_market *m, struct rc_model **models, size_t *n,
                          struct rc_rpc_error *err);

/* ---- writes (send, wait for the receipt) --------------------------------------------------- */

/* MOR approve(spender, amount). */
int rc_market_mor_approve(struct rc_market *m, struct rc_txm *txm, const uint8_t spender[20],
                          const struct rc_u256 *amount, struct rc_rpc_error *err);

/*
 * Make sure the Diamond may take `amount` MOR from the wallet on top of what this market's
 * writes in flight from the same wallet will take: if allowance - pending < amount, approve
 * pending + 3 x amount (the reference keeps 3 x stake, §3.6.2; approve rather than
 * increaseAllowance, which every ERC-20 has). The writers below (register, bid, open) reserve
 * their amount this way until their receipt is in, so many sessions opened at once from one
 * wallet do not race each other's transferFrom. Serialized per market.
 */
int rc_market_ensure_allowance(struct rc_market *m, struct rc_txm *txm,
                               const struct rc_u256 *amount, struct rc_rpc_error *err);

/* providerRegister(provider, stake, endpoint); approves the stake first if needed. */
int rc_market_provider_register(struct rc_market *m, struct rc_txm *txm, const uint8_t provider[20],
                                const struct rc_u256 *stake, const char *endpoint,
                                struct rc_rpc_error *err);

struct rc_market_model_reg {
	const uint8_t *owner; /* 20 bytes */
	uint8_t base_model_id[32];
	uint8_t ipfs_cid[32];
	struct rc_u256 fee, stake;
	const char *name;
	const char *const *tags;
	size_t ntags;
};
/* modelRegister(...); approves the stake first if needed; model_id (may be NULL) gets the id. */
int rc_market_model_register(struct rc_market *m, struct rc_txm *txm,
                             const struct rc_market_model_reg *reg, uint8_t model_id[32],
                             struct rc_rpc_error *err);

/* postModelBid(provider, modelId, price); approves the bid fee first if needed; bid_id (may be
 * NULL) gets the new bid's id, from the MarketplaceBidPosted log. */
int rc_market_post_bid(struct rc_market *m, struct rc_txm *txm, const uint8_t provider[20],
                       const uint8_t model_id[32], const struct rc_u256 *price_per_second,
                       uint8_t bid_id[32], struct rc_rpc_error *err);
int rc_market_delete_bid(struct rc_market *m, struct rc_txm *txm, const uint8_t bid_id[32],
                         struct rc_rpc_error *err);

/*
 * openSession(wallet, amount, direct, approval, sig) (§3.6) after rc_market_ensure_allowance();
 * session_id (may be NULL) gets topics[2] of the SessionOpened log in the receipt.
 */
int rc_market_open_session(struct rc_market *m, struct rc_txm *txm, const struct rc_u256 *amount,
                           bool direct, const uint8_t *approval, size_t approval_len,
                           const uint8_t *sig, size_t sig_len, uint8_t session_id[32],
                           struct rc_rpc_error *err);
/* closeSession(receipt, sig) (§3.7). */
int rc_market_close_session(struct rc_market *m, struct rc_txm *txm, const uint8_t *receipt,
                            size_t receipt_len, const uint8_t *sig, size_t sig_len,
                            struct rc_rpc_error *err);

/* ---- events (§3.4) -------------------------------------------------------------------------- */

struct rc_market_session_event {
	bool opened; /* SessionOpened; false: SessionClosed */
	uint8_t user[20];
	uint8_t session_id[32];
	uint8_t provider[20];
	uint64_t block_number;
	uint8_t tx_hash[32];
};

/* Pure: decode a SessionOpened/SessionClosed log. RC_OK, RC_ENOTFOUND (another event) or
 * RC_EPARSE (right topic0, wrong shape: topic count or dirty address words). */
int rc_market_decode_session_event(const struct rc_rpc_log *log,
                                   struct rc_market_session_event *ev);

/* eth_getLogs on the Diamond for both events in [from_block, to_block] (UINT64_MAX = latest),
 * optionally only for one user and/or provider. *ev owned out (free()). */
int rc_market_session_events(struct rc_market *m, uint64_t from_block, uint64_t to_block,
                             const uint8_t *user, const uint8_t *provider,
                             struct rc_market_session_event **ev, size_t *n,
                             struct rc_rpc_error *err);

#endif
