/*
 * router-core: 20-byte Ethereum addresses as text, with EIP-55 mixed-case checksums.
 *
 * An address is a plain uint8_t[RC_ADDR_LEN] everywhere in router-core (the same bytes
 * rc_secp_pubkey_to_address() and the ABI codec use). Text in: 40 hex digits with an optional
 * "0x"; all-lower or all-upper text carries no checksum and is accepted as is, mixed case must be a
 * valid EIP-55 checksum (a typo in a hand-copied address is caught). Text out: lower case (what the
 * MOR-RPC messages carry, morpheus-protocol §2.9) or EIP-55.
 *
 * Pure and thread-safe.
 */
#ifndef RC_ADDR_H
#define RC_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_common.h>

#define RC_ADDR_LEN 20
#define RC_ADDR_STR_SIZE 43 /* "0x" + 40 digits + NUL */

/*
 * Parse len bytes of text at s into out. Returns RC_OK; RC_EPARSE for a wrong length or a non-hex
 * character (err, if non-NULL, gets the offset and a short text); RC_ECRYPTO for mixed-case text
 * whose EIP-55 checksum is wrong (err->offset points at the first wrongly-cased digit).
 */
int rc_addr_parse(uint8_t out[RC_ADDR_LEN], const char *s, size_t len, struct rc_errinfo *err);

/* "0x" + 40 lower-case digits + NUL into out. */
void rc_addr_format(const uint8_t addr[RC_ADDR_LEN], char out[RC_ADDR_STR_SIZE]);

/* "0x" + 40 EIP-55 checksummed digits + NUL into out. */
void rc_addr_format_checksum(const uint8_t addr[RC_ADDR_LEN], char out[RC_ADDR_STR_SIZE]);

/* True if every byte is zero (the "no address" value of Solidity structs, §3.3). */
bool rc_addr_is_zero(const uint8_t addr[RC_ADDR_LEN]);

#endif
