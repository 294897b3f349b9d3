/*
 * provider: the node's local session table: capacity (morpheus-protocol §4.3), per-session
 * ordering (one prompt at a time per session, §2.5.3) and the per-session statistics that
 * session.report turns into a receipt (§2.5.5).
 *
 * Capacity, checked at session.request against the bid's model:
 *   simple        sessions of the model known here with ends_at > now; admit if < slots
 *   idle_timeout  activity records of the model (one per served prompt) whose session has
 *                 ends_at >= now and which ended within the last 15 min; records older than
 *                 60 min are purged; admit if < slots
 *   slots == 0    unlimited
 * Sessions that ended more than PV_SESSION_KEEP_S ago are purged once the table holds
 * PV_SESSIONS_PURGE_AT entries. A session becomes known at its first prompt (the reference learns
 * it from the chain event or the prompt; we have no event listener). Time is passed in (unix
 * seconds) so the rules are unit-tested without clocks.
 *
 * Thread-safety: every function is thread-safe (one mutex; acquire waits on a condition
 * variable, outside the mutex's critical sections).
 */
#ifndef PV_SESSIONS_H
#define PV_SESSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_common.h>

#include "pv_models.h"

#define PV_IDLE_WINDOW_S (15 * 60)
#define PV_IDLE_PURGE_S (60 * 60)
#define PV_SESSION_KEEP_S (24 * 60 * 60) /* ended sessions kept this long */
#define PV_SESSIONS_PURGE_AT 1024        /* table size that triggers a purge */

/* What one served prompt adds to its session's statistics. */
struct pv_prompt_stats {
	uint32_t ttft_ms;        /* request start to first chunk */
	uint32_t tps_scaled1000; /* output_tokens * 1000 / max(1, whole seconds) */
	uint32_t tokens_in, tokens_out;
};

/* Aggregates for the receipt: means over prompts, sums of tokens. */
struct pv_session_stats {
	uint32_t prompts;
	uint32_t tps_scaled1000; /* integer mean */
	uint32_t ttft_ms;        /* integer mean */
	uint32_t tokens_in, tokens_out;
};

struct pv_sessions;

/* New empty table. RC_OK or RC_ENOMEM. */
int pv_sessions_new(struct pv_sessions **out);
/* Free. NULL is a no-op. No prompt may be in flight. */
void pv_sessions_free(struct pv_sessions *s);

/* True when a new session of model_idx fits (rules above). Purges old activity. */
bool pv_sessions_admit(struct pv_sessions *s, size_t model_idx, unsigned slots,
                       enum pv_capacity_policy policy, uint64_t now);

/* Active count that pv_sessions_admit() compares with slots (for metrics and tests). */
unsigned pv_sessions_active(struct pv_sessions *s, size_t model_idx, enum pv_capacity_policy policy,
                            uint64_t now);

/*
 * Take the session's turn: record the session (model, ends_at) if new, then wait until no other
 * prompt of the same session is running, at most timeout_ms. RC_OK (pair with
 * pv_sessions_release), RC_ETIMEOUT, RC_ENOMEM.
 */
int pv_sessions_acquire(struct pv_sessions *s, const uint8_t id[32], size_t model_idx,
                        uint64_t ends_at, long timeout_ms);

/* Give the turn back; st (may be NULL: nothing was served) is added to the statistics and,
 * if non-NULL, one activity record ending at now is kept for idle_timeout. */
void pv_sessions_release(struct pv_sessions *s, const uint8_t id[32],
                         const struct pv_prompt_stats *st, uint64_t now);

/* Statistics of a known session. RC_OK or RC_ENOTFOUND. */
int pv_sessions_stats(struct pv_sessions *s, const uint8_t id[32], struct pv_session_stats *out);

/* Forget a session (closed on chain). Its running prompt, if any, finishes normally. */
void pv_sessions_forget(struct pv_sessions *s, const uint8_t id[32]);

#endif
