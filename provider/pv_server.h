/*
 * provider: the MOR-RPC server (morpheus-protocol §2.1, §2.5, §4.4, §4.5).
 *
 * One request per TCP connection, a thread per connection (capped by max_connections; a
 * connection over the cap is closed at once and counted). Each thread reads one JSON value
 * (rc_jsonstream, 4 MiB max, 30 s to arrive), answers it and closes the socket:
 *   network.ping     signed pong (not verified by the node: §2.5.1)
 *   session.request  consumer signature with the request's own key, key's address == user
 *                    (stricter than the reference: otherwise anyone could replace a user's key),
 *                    bid on chain: exists, ours, active, for a configured model; capacity; the
 *                    key stored (pv_store); signed SessionRes with the approval + EIP-191 sig
 *   session.prompt   session on chain: exists, its bid ours, not closed, not expired (endsAt
 *                    against both the request timestamp and our clock); user key from the
 *                    store; signature; one prompt at a time per session; backend streamed
 *                    chunk by chunk, each encrypted to the user and signed, then "[DONE]";
 *                    backend HTTP error -> signed encrypted error; failure -> unsigned error
 *   session.report   signed receipt of this node's measured statistics for the session
 * Refusals are unsigned infrastructure errors (§2.5.4) with short lowercase texts: "no
 * capacity", "session expired", "session closed", "user not found", "invalid signature", ...
 *
 * The node state is borrowed and must outlive the server. Thread-safety: pv_server_* calls
 * belong to the main thread; connection threads share only thread-safe objects.
 */
#ifndef PV_SERVER_H
#define PV_SERVER_H

#include <stdint.h>

#include <router-core/rc_market.h>
#include <router-core/rc_rpc.h>
#include <router-core/rc_secp.h>

#include "pv_models.h"
#include "pv_sessions.h"
#include "pv_store.h"

/* Everything a connection needs; filled by main, read-only afterwards. */
struct pv_node {
	const struct pv_models *models;
	struct rc_secp_privkey key;
	uint8_t pub[RC_SECP_PUBKEY_LEN];
	uint8_t addr[RC_SECP_ADDR_LEN];
	uint64_t chain_id;
	struct rc_market *market;
	struct pv_store *store;
	struct pv_sessions *sessions;
	long backend_timeout_ms;
	unsigned max_connections;
	const char *version;
};

struct pv_server;

/* The timestamp for a session approval: the wall clock in ms, strictly increasing across the
 * process (approvals are single-use by their exact bytes, §3.6). Thread-safe. */
uint64_t pv_approval_ms(void);

/* Bind host:port (port 0: any free port) and start accepting on a thread. RC_OK, RC_EIO (bind
 * failed; logged), RC_ENOMEM. */
int pv_server_start(struct pv_node *node, const char *host, unsigned port, struct pv_server **out);

/* The bound port. */
unsigned pv_server_port(const struct pv_server *s);

/* Stop accepting; wait up to timeout_ms for running connections to finish. Returns the number
 * still running when it gave up (0 = drained). */
long pv_server_drain(struct pv_server *s, long timeout_ms);

/* Free (after pv_server_drain). Connections still running keep their own references. */
void pv_server_free(struct pv_server *s);

#endif
