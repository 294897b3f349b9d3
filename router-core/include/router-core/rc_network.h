/*
 * router-core: Morpheus network presets (morpheus-protocol §3.1) and the start-up chain-id check.
 *
 * A preset is a name, a chain id and the Diamond and MOR token addresses. Every field is meant
 * to be overridable by configuration (trap 19: the network moved from Arbitrum to BASE in March
 * 2026); the presets are only defaults. Pure data and thread-safe, except
 * rc_network_check_chain_id(), which asks the node.
 */
#ifndef RC_NETWORK_H
#define RC_NETWORK_H

#include <stdint.h>

#include <router-core/rc_common.h>
#include <router-core/rc_rpc.h>

struct rc_network {
	const char *name; /* "base", "base-sepolia", "arbitrum", "arbitrum-sepolia"; static */
	uint64_t chain_id;
	uint8_t diamond[20];
	uint8_t mor[20];
};

/* Names of the presets, for usage text: "base|base-sepolia|arbitrum|arbitrum-sepolia". */
#define RC_NETWORK_NAMES "base|base-sepolia|arbitrum|arbitrum-sepolia"

/* Fill *out with the preset called name (exact, lower case). RC_OK or RC_ENOTFOUND. */
int rc_network_find(const char *name, struct rc_network *out);

/* The preset for a chain id. RC_OK or RC_ENOTFOUND. */
int rc_network_by_chain_id(uint64_t chain_id, struct rc_network *out);

/*
 * Ask the node for eth_chainId and compare with expected. RC_OK; RC_ECHAINID when they differ
 * (err->message says "node at URL is on chain X, expected Y"); or the rc_rpc error. actual may
 * be NULL.
 */
int rc_network_check_chain_id(struct rc_rpc *rpc, uint64_t expected, uint64_t *actual,
                              struct rc_rpc_error *err);

#endif
