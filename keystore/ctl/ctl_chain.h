/*
 * morgatectl chain commands: the wallet (encrypted key file) and the Morpheus marketplace
 * (reads, and the registrations a resale provider needs). See ctl_chain.c for the usage text.
 */
#ifndef CTL_CHAIN_H
#define CTL_CHAIN_H

#include <stdint.h>

#include <router-core/rc_market.h>
#include <router-core/rc_rpc.h>
#include <router-core/rc_secp.h>
#include <router-core/rc_txm.h>

/* Exit status of a chain or wallet failure (node unreachable, chain id mismatch, transaction not
 * mined, wrong passphrase). A contract revert is a conflict (4); an unknown thing is 3. */
#define CTL_EXIT_CHAIN 6

/*
 * Run `morgatectl [--json] CMD ARGS...` for CMD one of wallet, market, provider, model, bid.
 * Prints the result (a table, or JSON when json is non-zero) on stdout, one error line on
 * stderr, and returns the exit status (0 ok, 2 usage, 3 not found, 4 conflict/revert, 6 chain).
 */
int ctl_chain_main(const char *cmd, int argc, char **argv, int json);

/*
 * A chain connection for another command group (`sessions close`), set up from the same options
 * and environment as the chain commands: --rpc (else $MORGATE_RPC), --network ($MORGATE_NETWORK),
 * --chain-id, --diamond ($MORGATE_DIAMOND), --mor ($MORGATE_MOR), --wallet ($MORGATE_WALLET),
 * --passphrase-file (else $MORGATE_WALLET_PASSPHRASE), --timeout. The node's chain id is checked,
 * the market and the wallet's transaction manager are ready, and the wallet key is kept for
 * signing (wiped by ctl_chain_disconnect). Positional arguments (at most 2) are in pos.
 */
struct ctl_chain_conn {
	struct rc_rpc *rpc;
	struct rc_market *market;
	struct rc_txm *txm;
	struct rc_secp_privkey key;
	uint8_t wallet[20];
	uint64_t chain_id;
	const char *pos[2];
	int npos;
};

/* 0, or the exit status with one line printed on stderr (2 usage, 3 no wallet file, 6 chain). */
int ctl_chain_connect(int argc, char **argv, struct ctl_chain_conn *out);
/* Free what ctl_chain_connect set up and wipe the key; safe on a zeroed or failed conn. */
void ctl_chain_disconnect(struct ctl_chain_conn *c);
/* One stderr line for a failed chain call (what: "cannot close the session") and its exit status:
 * 4 when the contract refused, else 6. */
int ctl_chain_fail(const char *what, int rc, const struct rc_rpc_error *e);

#endif
