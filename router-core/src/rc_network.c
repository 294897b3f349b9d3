/*
 * Network presets: the chain ids and addresses of morpheus-protocol §3.1, as text (so they can be
 * compared with the spec at a glance) parsed on lookup.
 */
#include <stdio.h>
#include <string.h>

#include <router-core/rc_addr.h>
#include <router-core/rc_network.h>

static const struct {
	const char *name;
	uint64_t chain_id;
	const char *diamond, *mor;
} presets[] = {
        {"base", 8453, "0x6aBE1d282f72B474E54527D93b979A4f64d3030a",
         "0x7431aDa8a591C955a994a21710752EF9b882b8e3"},
        {"base-sepolia", 84532, "0x6e4d0B775E3C3b02683A6F277Ac80240C4aFF930",
         "0x5C80Ddd187054E1E4aBBfFCD750498e81d34FfA3"},
        {"arbitrum", 42161, "0xDE819AaEE474626E3f34Ef0263373357e5a6C71b",
         "0x092bAaDB7DEf4C3981454dD9c0A0D7FF07bCFc86"},
        {"arbitrum-sepolia", 421614, "0xb8C55cD613af947E73E262F0d3C54b7211Af16CF",
         "0x34a285A1B1C166420Df5b6630132542923B5b27E"},
};

static int fill(size_t i, struct rc_network *out)
{
	out->name = presets[i].name;
	out->chain_id = presets[i].chain_id;
	if (rc_addr_parse(out->diamond, presets[i].diamond, strlen(presets[i].diamond), NULL) !=
	            RC_OK ||
	    rc_addr_parse(out->mor, presets[i].mor, strlen(presets[i].mor), NULL) != RC_OK)
		return RC_EPARSE; /* a typo in the table: test_rc_network catches it */
	return RC_OK;
}

int rc_network_find(const char *name, struct rc_network *out)
{
	for (size_t i = 0; name && i < sizeof presets / sizeof *presets; i++)
		if (strcmp(presets[i].name, name) == 0)
			return fill(i, out);
	return RC_ENOTFOUND;
}

int rc_network_by_chain_id(uint64_t chain_id, struct rc_network *out)
{
	for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
		if (presets[i].chain_id == chain_id)
			return fill(i, out);
	return RC_ENOTFOUND;
}

int rc_network_check_chain_id(struct rc_rpc *rpc, uint64_t expected, uint64_t *actual,
                              struct rc_rpc_error *err)
{
	uint64_t id = 0;
	int rc = rc_rpc_chain_id(rpc, &id, err);
	if (actual)
		*actual = id;
	if (rc != RC_OK)
		return rc;
	if (id != expected) {
		if (err) {
			char url[sizeof err->url];
			memcpy(url, err->url, sizeof url);
			err->rc = RC_ECHAINID;
			snprintf(err->message, sizeof err->message,
			         "node at '%s' is on chain %llu, expected %llu", url,
			         (unsigned long long)id, (unsigned long long)expected);
		}
		return RC_ECHAINID;
	}
	return RC_OK;
}
