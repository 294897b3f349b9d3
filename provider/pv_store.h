/*
 * provider: the user public keys learned at session.request, in a small SQLite table, so that a
 * session opened before a restart is still served (morpheus-protocol §2.6, trap 11). Last
 * handshake wins, as in the reference.
 *
 *   CREATE TABLE pv_users (addr BLOB PRIMARY KEY CHECK(length(addr)=20),
 *                          pubkey BLOB NOT NULL CHECK(length(pubkey)=65),
 *                          updated_ms INTEGER NOT NULL) STRICT
 *
 * Per-session prompt statistics are kept too, so a session.report after a restart still gets
 * the real figures (a missing report makes the consumer close the session as disputed, which
 * withholds part of the provider's payment: morpheus-protocol trap 13):
 *
 *   CREATE TABLE pv_session_stats (session_id BLOB PRIMARY KEY CHECK(length(session_id)=32),
 *          prompts, sum_tps, sum_ttft, tokens_in, tokens_out INTEGER NOT NULL) STRICT
 *
 * Thread-safety: one connection opened in serialized mode, with a mutex around each statement
 * pair; every function may be called from any thread.
 */
#ifndef PV_STORE_H
#define PV_STORE_H

#include <stdint.h>

#include <router-core/rc_common.h>

#include "pv_sessions.h"

struct pv_store;

/* Open (creating) the database at path. RC_OK, RC_EIO (message logged), RC_ENOMEM. */
int pv_store_open(const char *path, struct pv_store **out);
/* Close. NULL is a no-op. */
void pv_store_close(struct pv_store *s);
/* Remember pubkey (65 bytes) for addr (20 bytes). RC_OK or RC_EIO. */
int pv_store_put_user(struct pv_store *s, const uint8_t addr[20], const uint8_t pub[65],
                      uint64_t now_ms);
/* Look up the pubkey of addr. RC_OK, RC_ENOTFOUND or RC_EIO. */
int pv_store_get_user(struct pv_store *s, const uint8_t addr[20], uint8_t pub[65]);

/* Add one served prompt to a session's statistics. RC_OK or RC_EIO. */
int pv_store_add_prompt(struct pv_store *s, const uint8_t session_id[32],
                        const struct pv_prompt_stats *st);

/* Aggregated statistics of a session (means and sums as in pv_sessions_stats). RC_OK,
 * RC_ENOTFOUND or RC_EIO. */
int pv_store_session_stats(struct pv_store *s, const uint8_t session_id[32],
                           struct pv_session_stats *out);

#endif
