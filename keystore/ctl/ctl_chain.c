/*
 * morgatectl chain commands: wallet key files and the Morpheus marketplace, on router-core's
 * chain client (rc_rpc, rc_txm, rc_market, rc_network).
 *
 * Settings come from flags, then the environment: --rpc URL (repeatable; else $MORGATE_RPC,
 * comma-separated), --network NAME (else $MORGATE_NETWORK), --diamond/--mor (else
 * $MORGATE_DIAMOND/$MORGATE_MOR, else the network preset), --wallet FILE (else $MORGATE_WALLET)
 * with the passphrase from $MORGATE_WALLET_PASSPHRASE or --passphrase-file. A private key is
 * never taken from argv (where `ps` shows it): `wallet import` reads it from stdin.
 *
 * When a network is named (or --chain-id given) the node's chain id must match it before
 * anything else happens: a mainnet wallet pointed at the wrong node fails with a clear message
 * instead of signing for the wrong chain.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include <router-core/rc_addr.h>
#include <router-core/rc_keccak.h>
#include <router-core/rc_keyfile.h>
#include <router-core/rc_market.h>
#include <router-core/rc_network.h>

#include "ctl_chain.h"
#include "ctl_msg.h"

enum { CX_OK = 0, CX_USAGE = 2, CX_NOTFOUND = 3, CX_CONFLICT = 4 };

/* ---- messages ------------------------------------------------------------------------------- */

/* One line for a failed chain operation, and its exit status. */
static int chain_fail(const char *what, int rc, const struct rc_rpc_error *e)
{
	if (rc == RC_EREVERT && e && e->has_revert)
		return ctl_say(CX_CONFLICT, "%s: the contract refused: %s", what, e->revert_text);
	if (rc == RC_ETXFAILED && e && e->has_revert)
		return ctl_say(CX_CONFLICT, "%s: transaction failed: %s", what, e->revert_text);
	if (e && e->message[0])
		return ctl_say(CTL_EXIT_CHAIN, "%s: %s: %s", what, rc_rpc_strerror(rc), e->message);
	return ctl_say(CTL_EXIT_CHAIN, "%s: %s", what, rc_rpc_strerror(rc));
}

/* ---- options -------------------------------------------------------------------------------- */

#define MAX_RPC 8
#define MAX_TAGS 16
#define MAX_POS 2

struct opts {
	const char *rpc[MAX_RPC];
	size_t nrpc;
	const char *network, *chain_id, *diamond, *mor, *wallet, *passfile, *timeout;
	const char *endpoint, *stake, *name, *base_id, *ipfs, *fee, *model, *price;
	const char *tags[MAX_TAGS];
	size_t ntags;
	int weak_kdf;
	const char *pos[MAX_POS];
	int npos;
};

struct optdef {
	const char *name;
	size_t off; /* offsetof the const char * in struct opts; 0 = special */
};

#define O(field) offsetof(struct opts, field)
static const struct optdef optdefs[] = {
        {"network", O(network)}, {"chain-id", O(chain_id)},
        {"diamond", O(diamond)}, {"mor", O(mor)},
        {"wallet", O(wallet)},   {"passphrase-file", O(passfile)},
        {"timeout", O(timeout)}, {"endpoint", O(endpoint)},
        {"stake", O(stake)},     {"name", O(name)},
        {"base-id", O(base_id)}, {"ipfs", O(ipfs)},
        {"fee", O(fee)},         {"model", O(model)},
        {"price", O(price)},     {NULL, 0},
};

/* Parse argv; returns CX_OK or CX_USAGE (message printed). */
static int parse_opts(int argc, char **argv, struct opts *o)
{
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];
		if (s[0] != '-' || s[1] == '\0') {
			if (o->npos >= MAX_POS)
				return ctl_usage("unexpected argument '%s'", s);
			o->pos[o->npos++] = s;
			continue;
		}
		if (s[1] != '-')
			return ctl_usage("unknown option '%s'", s);
		const char *name = s + 2, *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
#define IS(x) (nlen == strlen(x) && memcmp(name, x, nlen) == 0)
		if (IS("weak-kdf")) {
			if (eq)
				return ctl_usage("option '--weak-kdf' takes no value");
			o->weak_kdf = 1;
			continue;
		}
		if (IS("private-key") || IS("key"))
			return ctl_usage("a private key is never taken from the command line; use "
			             "'wallet import' with the key on stdin");
		const char *val;
		if (eq)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else
			return ctl_usage("option '--%.*s' needs a value", (int)nlen, name);
		if (IS("rpc")) {
			if (o->nrpc == MAX_RPC)
				return ctl_usage("too many --rpc URLs (at most %d)", MAX_RPC);
			o->rpc[o->nrpc++] = val;
			continue;
		}
		if (IS("tag")) {
			if (o->ntags == MAX_TAGS)
				return ctl_usage("too many --tag values (at most %d)", MAX_TAGS);
			o->tags[o->ntags++] = val;
			continue;
		}
		const struct optdef *d = optdefs;
		while (d->name && !IS(d->name))
			d++;
#undef IS
		if (!d->name)
			return ctl_usage("unknown option '--%.*s'", (int)nlen, name);
		const char **slot = (const char **)((char *)o + d->off);
		if (*slot)
			return ctl_usage("option '--%s' given twice", d->name);
		*slot = val;
	}
	return CX_OK;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static int parse_u256(const char *flag, const char *s, struct rc_u256 *out)
{
	if (rc_u256_parse_dec(out, s, strlen(s), NULL) != RC_OK)
		return ctl_usage("--%s wants a whole number of wei, not '%s'", flag, s);
	return CX_OK;
}

static int parse_addr(const char *what, const char *s, uint8_t out[20])
{
	struct rc_errinfo ei;
	if (!s)
		return ctl_usage("%s is missing", what);
	int rc = rc_addr_parse(out, s, strlen(s), &ei);
	if (rc == RC_ECRYPTO)
		return ctl_usage("%s '%s' has a wrong EIP-55 checksum", what, s);
	if (rc != RC_OK)
		return ctl_usage("%s '%s' is not an address", what, s);
	return CX_OK;
}

static int parse_b32(const char *what, const char *s, uint8_t out[32])
{
	if (!s)
		return ctl_usage("%s is missing", what);
	if (rc_hex_decode_exact(s, strlen(s), out, 32, NULL) != RC_OK)
		return ctl_usage("%s '%s' is not 32 bytes of hex", what, s);
	return CX_OK;
}

/* ---- output helpers ------------------------------------------------------------------------- */

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII | JSON_SORT_KEYS);
	if (s)
		puts(s);
	free(s);
	json_decref(j);
}

static json_t *j_addr(const uint8_t a[20])
{
	char s[RC_ADDR_STR_SIZE];
	rc_addr_format_checksum(a, s);
	return json_string(s);
}

static json_t *j_b32(const uint8_t b[32])
{
	char s[67];
	rc_hex_encode_0x(b, 32, s, sizeof s);
	return json_string(s);
}

static json_t *j_u256(const struct rc_u256 *v)
{
	char s[RC_U256_DEC_SIZE];
	rc_u256_format_dec(v, s, sizeof s);
	return json_string(s);
}

static const char *s_u256(const struct rc_u256 *v, char buf[RC_U256_DEC_SIZE])
{
	rc_u256_format_dec(v, buf, RC_U256_DEC_SIZE);
	return buf;
}

static const char *s_time(uint64_t t, char buf[32])
{
	if (!t)
		return "-";
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

static json_t *j_time(uint64_t t)
{
	char b[32];
	return t ? json_string(s_time(t, b)) : json_null();
}

struct rowset {
	int ncols;
	size_t n, cap;
	char **cells;
};

static void rows_add(struct rowset *r, const char *const *cols)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->cells = realloc(r->cells, r->cap * (size_t)r->ncols * sizeof *r->cells);
		if (!r->cells)
			abort();
	}
	for (int c = 0; c < r->ncols; c++) {
		char *s = strdup(cols[c] ? cols[c] : "");
		if (!s)
			abort();
		/* Chain strings are untrusted: no control characters on a terminal. */
		for (char *p = s; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		r->cells[r->n * (size_t)r->ncols + (size_t)c] = s;
	}
	r->n++;
}

static void rows_print(struct rowset *r)
{
	size_t w[8] = {0};
	for (size_t i = 0; i < r->n; i++)
		for (int c = 0; c < r->ncols; c++) {
			size_t l = strlen(r->cells[i * (size_t)r->ncols + (size_t)c]);
			if (l > w[c])
				w[c] = l;
		}
	for (size_t i = 0; i < r->n; i++) {
		for (int c = 0; c < r->ncols; c++) {
			char *s = r->cells[i * (size_t)r->ncols + (size_t)c];
			if (c + 1 < r->ncols)
				printf("%-*s  ", (int)w[c], s);
			else
				fputs(s, stdout);
			free(s);
		}
		putchar('\n');
	}
	free(r->cells);
}

/* key: value lines for one record. */
static void kv(const char *k, const char *v)
{
	printf("%-22s %s\n", k, v);
}

/* ---- chain set-up --------------------------------------------------------------------------- */

struct chain {
	struct rc_rpc *rpc;
	struct rc_market *mkt;
	struct rc_txm *txm;
	uint64_t chain_id;
	bool have_diamond, have_mor;
	uint8_t diamond[20], mor[20];
	uint8_t wallet_addr[20];
};

static void chain_close(struct chain *c)
{
	rc_txm_free(c->txm);
	rc_market_free(c->mkt);
	rc_rpc_free(c->rpc);
	memset(c, 0, sizeof *c);
}

/* Read the passphrase: $MORGATE_WALLET_PASSPHRASE, else the first line of --passphrase-file. */
static int passphrase(const struct opts *o, char *buf, size_t cap, size_t *len)
{
	const char *e = getenv("MORGATE_WALLET_PASSPHRASE");
	const char *file = o->passfile;
	if (e && *e && !file) {
		size_t n = strlen(e);
		if (n >= cap)
			return ctl_usage("the passphrase is too long");
		memcpy(buf, e, n + 1);
		*len = n;
		return CX_OK;
	}
	if (!file)
		return ctl_usage("a wallet passphrase is needed: set MORGATE_WALLET_PASSPHRASE or use "
		             "--passphrase-file");
	FILE *f = fopen(file, "r");
	if (!f)
		return ctl_say(CX_NOTFOUND, "cannot open passphrase file '%s': %s", file,
		           strerror(errno));
	size_t n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *nl = memchr(buf, '\n', n);
	if (nl) {
		*nl = '\0';
		n = (size_t)(nl - buf);
		if (n && buf[n - 1] == '\r')
			buf[--n] = '\0';
	}
	if (!n)
		return ctl_usage("passphrase file '%s' is empty", file);
	*len = n;
	return CX_OK;
}

static const char *wallet_path(const struct opts *o)
{
	return o->wallet ? o->wallet : env("MORGATE_WALLET");
}

static int open_wallet(const struct opts *o, struct rc_secp_privkey *key, uint8_t addr[20])
{
	const char *path = wallet_path(o);
	if (!path)
		return ctl_usage("this command needs a wallet: --wallet FILE or $MORGATE_WALLET");
	char pass[1024];
	size_t plen = 0;
	int x = passphrase(o, pass, sizeof pass, &plen);
	if (x != CX_OK)
		return x;
	struct rc_errinfo ei = {0};
	int rc = rc_keyfile_read(path, pass, plen, key, addr, &ei);
	sodium_memzero(pass, sizeof pass);
	if (rc == RC_OK)
		return CX_OK;
	if (rc == RC_EIO && errno == ENOENT)
		return ctl_say(CX_NOTFOUND, "no wallet at '%s'", path);
	if (rc == RC_ECRYPTO)
		return ctl_say(CTL_EXIT_CHAIN, "cannot open wallet '%s': wrong passphrase", path);
	if (rc == RC_EPARSE)
		return ctl_say(CTL_EXIT_CHAIN, "wallet '%s' is damaged: %s", path, ei.text);
	return ctl_say(CTL_EXIT_CHAIN, "cannot open wallet '%s': %s", path, rc_strerror(rc));
}

/* Connect: RPC, chain id check, market addresses; the wallet's transaction manager if asked,
 * and with keep the wallet key itself (for signing more than transactions). */
static int chain_open_keep(const struct opts *o, bool need_market, bool need_wallet,
                           struct chain *c, struct rc_secp_privkey *keep)
{
	memset(c, 0, sizeof *c);
	const char *urls[MAX_RPC];
	size_t n = 0;
	char envbuf[2048];
	for (size_t i = 0; i < o->nrpc; i++)
		urls[n++] = o->rpc[i];
	if (!n && env("MORGATE_RPC")) {
		snprintf(envbuf, sizeof envbuf, "%s", env("MORGATE_RPC"));
		char *save = NULL;
		for (char *t = strtok_r(envbuf, ", ", &save); t && n < MAX_RPC;
		     t = strtok_r(NULL, ", ", &save))
			urls[n++] = t;
	}
	if (!n)
		return ctl_usage("no RPC URL: give --rpc URL or set MORGATE_RPC");
	for (size_t i = 0; i < n; i++)
		if (strncmp(urls[i], "http://", 7) != 0 && strncmp(urls[i], "https://", 8) != 0)
			return ctl_usage("RPC URL '%s' is not http:// or https://", urls[i]);

	const char *netname = o->network ? o->network : env("MORGATE_NETWORK");
	struct rc_network net;
	bool have_net = false;
	if (netname) {
		if (rc_network_find(netname, &net) != RC_OK)
			return ctl_usage("unknown network '%s' (one of " RC_NETWORK_NAMES ")", netname);
		have_net = true;
	}
	uint64_t want_chain = have_net ? net.chain_id : 0;
	if (o->chain_id) {
		struct rc_u256 v;
		if (rc_u256_parse_dec(&v, o->chain_id, strlen(o->chain_id), NULL) != RC_OK ||
		    rc_u256_to_u64(&v, &want_chain) != RC_OK || !want_chain)
			return ctl_usage("--chain-id wants a positive number, not '%s'", o->chain_id);
	}
	const char *dia = o->diamond ? o->diamond : env("MORGATE_DIAMOND");
	const char *mor = o->mor ? o->mor : env("MORGATE_MOR");
	int x;
	if (dia) {
		if ((x = parse_addr("--diamond", dia, c->diamond)) != CX_OK)
			return x;
		c->have_diamond = true;
	} else if (have_net) {
		memcpy(c->diamond, net.diamond, 20);
		c->have_diamond = true;
	}
	if (mor) {
		if ((x = parse_addr("--mor", mor, c->mor)) != CX_OK)
			return x;
		c->have_mor = true;
	} else if (have_net) {
		memcpy(c->mor, net.mor, 20);
		c->have_mor = true;
	}
	if (need_market && !c->have_diamond)
		return ctl_usage("no Diamond address: give --network or --diamond");
	if (need_market && need_wallet && !c->have_mor)
		return ctl_usage("no MOR token address: give --network or --mor");

	long timeout = 15000;
	if (o->timeout) {
		char *end;
		timeout = strtol(o->timeout, &end, 10);
		if (*end || timeout <= 0 || timeout > 600000)
			return ctl_usage("--timeout wants milliseconds (1..600000), not '%s'",
			             o->timeout);
	}
	struct rc_rpc_options ro = {urls, n, timeout < 3000 ? timeout : 3000, timeout, 30000, 0};
	if (rc_rpc_new(&ro, &c->rpc) != RC_OK)
		return ctl_say(CTL_EXIT_CHAIN, "cannot set up the RPC client");
	struct rc_rpc_error e;
	int rc = rc_rpc_chain_id(c->rpc, &c->chain_id, &e);
	if (rc != RC_OK) {
		chain_close(c);
		return chain_fail("cannot reach the chain", rc, &e);
	}
	if (want_chain && c->chain_id != want_chain) {
		int r = ctl_say(CTL_EXIT_CHAIN,
		            "node at '%s' is on chain %llu, but %s%s%s is chain %llu", e.url,
		            (unsigned long long)c->chain_id, have_net ? "network '" : "",
		            have_net ? net.name : "--chain-id", have_net ? "'" : "",
		            (unsigned long long)want_chain);
		chain_close(c);
		return r;
	}
	/* A market also serves MOR reads (wallet balance) when only --mor is known. */
	if ((c->have_diamond || c->have_mor) &&
	    rc_market_new(c->rpc, c->diamond, c->mor, &c->mkt) != RC_OK) {
		chain_close(c);
		return ctl_say(CTL_EXIT_CHAIN, "out of memory");
	}
	if (need_wallet) {
		struct rc_secp_privkey key;
		x = open_wallet(o, &key, c->wallet_addr);
		if (x != CX_OK) {
			chain_close(c);
			return x;
		}
		struct rc_txm_options to = {.chain_id = c->chain_id, .poll_interval_ms = 100};
		rc = rc_txm_new(c->rpc, &key, &to, &c->txm);
		if (rc == RC_OK && keep)
			*keep = key;
		rc_secp_privkey_release(&key);
		if (rc != RC_OK) {
			chain_close(c);
			return ctl_say(CTL_EXIT_CHAIN, "cannot use the wallet key: %s",
			           rc_strerror(rc));
		}
	}
	return CX_OK;
}

static int chain_open(const struct opts *o, bool need_market, bool need_wallet, struct chain *c)
{
	return chain_open_keep(o, need_market, need_wallet, c, NULL);
}

/* ---- wallet --------------------------------------------------------------------------------- */

static int print_address(const uint8_t addr[20], int json, const char *path)
{
	char s[RC_ADDR_STR_SIZE];
	rc_addr_format_checksum(addr, s);
	if (json)
		print_json(json_pack("{s:s, s:s}", "address", s, "wallet", path));
	else
		puts(s);
	return CX_OK;
}

static int wallet_write(const struct opts *o, struct rc_secp_privkey *key, int json)
{
	const char *path = wallet_path(o);
	if (!path)
		return ctl_usage("give the key file: --wallet FILE");
	char pass[1024];
	size_t plen = 0;
	int x = passphrase(o, pass, sizeof pass, &plen);
	if (x != CX_OK)
		return x;
	struct rc_keyfile_params p =
	        o->weak_kdf ? RC_KEYFILE_PARAMS_TEST_ONLY : RC_KEYFILE_PARAMS_DEFAULT;
	int rc = rc_keyfile_write(path, key, pass, plen, &p, 0);
	sodium_memzero(pass, sizeof pass);
	if (rc == RC_EIO && errno == EEXIST)
		return ctl_say(CX_CONFLICT, "wallet '%s' exists already", path);
	if (rc != RC_OK)
		return ctl_say(CTL_EXIT_CHAIN, "cannot write wallet '%s': %s", path,
		           rc == RC_EIO ? strerror(errno) : rc_strerror(rc));
	uint8_t addr[20];
	rc_secp_privkey_to_address(key, addr);
	return print_address(addr, json, path);
}

/* The address line of a key file, without the passphrase. */
static int wallet_address(const struct opts *o, int json)
{
	const char *path = wallet_path(o);
	if (!path)
		return ctl_usage("give the key file: --wallet FILE");
	FILE *f = fopen(path, "r");
	if (!f)
		return ctl_say(errno == ENOENT ? CX_NOTFOUND : CTL_EXIT_CHAIN,
		           "cannot open wallet '%s': %s", path, strerror(errno));
	char line[256];
	uint8_t addr[20];
	int found = 0;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "address ", 8) == 0) {
			size_t n = strcspn(line + 8, "\r\n");
			found = rc_addr_parse(addr, line + 8, n, NULL) == RC_OK;
			break;
		}
	fclose(f);
	if (!found)
		return ctl_say(CTL_EXIT_CHAIN, "wallet '%s' is damaged: no address line", path);
	return print_address(addr, json, path);
}

static int cmd_wallet(struct opts *o, int json)
{
	const char *sub = o->npos ? o->pos[0] : NULL;
	if (!sub)
		return ctl_usage("wallet needs a subcommand: new, import, address, balance");
	if (!strcmp(sub, "new") || !strcmp(sub, "import")) {
		if (o->npos > 1)
			return ctl_usage("unexpected argument '%s'", o->pos[1]);
		struct rc_secp_privkey key;
		int rc;
		if (!strcmp(sub, "new")) {
			rc = rc_secp_privkey_generate(&key);
			if (rc != RC_OK)
				return ctl_say(CTL_EXIT_CHAIN, "cannot generate a key");
		} else {
			char buf[256];
			size_t n = fread(buf, 1, sizeof buf - 1, stdin);
			buf[n] = '\0';
			while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
				buf[--n] = '\0';
			rc = rc_secp_privkey_from_hex(&key, buf, n, NULL);
			sodium_memzero(buf, sizeof buf);
			if (rc != RC_OK)
				return ctl_usage("stdin does not hold a private key (64 hex digits)");
		}
		int x = wallet_write(o, &key, json);
		rc_secp_privkey_release(&key);
		return x;
	}
	if (!strcmp(sub, "address")) {
		if (o->npos > 1)
			return ctl_usage("unexpected argument '%s'", o->pos[1]);
		return wallet_address(o, json);
	}
	if (!strcmp(sub, "balance")) {
		uint8_t who[20];
		int x;
		if (o->npos > 1) {
			if ((x = parse_addr("address", o->pos[1], who)) != CX_OK)
				return x;
		} else {
			const char *path = wallet_path(o);
			if (!path)
				return ctl_usage("give an ADDRESS or --wallet FILE");
			/* The address line is enough: no passphrase needed to read a balance. */
			FILE *f = fopen(path, "r");
			if (!f)
				return ctl_say(errno == ENOENT ? CX_NOTFOUND : CTL_EXIT_CHAIN,
				           "cannot open wallet '%s': %s", path, strerror(errno));
			char line[256];
			int ok = 0;
			while (fgets(line, sizeof line, f))
				if (strncmp(line, "address ", 8) == 0) {
					ok = rc_addr_parse(who, line + 8, strcspn(line + 8, "\r\n"),
					                   NULL) == RC_OK;
					break;
				}
			fclose(f);
			if (!ok)
				return ctl_say(CTL_EXIT_CHAIN, "wallet '%s' is damaged", path);
		}
		struct chain c;
		if ((x = chain_open(o, false, false, &c)) != CX_OK)
			return x;
		struct rc_rpc_error e;
		struct rc_u256 eth, morb;
		int rc = rc_rpc_get_balance(c.rpc, who, &eth, &e);
		if (rc == RC_OK && c.have_mor)
			rc = rc_market_mor_balance(c.mkt, who, &morb, &e);
		if (rc != RC_OK) {
			chain_close(&c);
			return chain_fail("cannot read the balance", rc, &e);
		}
		char b1[RC_U256_DEC_SIZE], b2[RC_U256_DEC_SIZE], as[RC_ADDR_STR_SIZE];
		rc_addr_format_checksum(who, as);
		if (json) {
			json_t *j = json_pack("{s:s, s:o, s:I}", "address", as, "eth_wei",
			                      j_u256(&eth), "chain_id", (json_int_t)c.chain_id);
			json_object_set_new(j, "mor_wei", c.have_mor ? j_u256(&morb) : json_null());
			print_json(j);
		} else {
			kv("address", as);
			kv("eth (wei)", s_u256(&eth, b1));
			kv("mor (wei)", c.have_mor ? s_u256(&morb, b2) : "- (no --mor)");
		}
		chain_close(&c);
		return CX_OK;
	}
	return ctl_usage("unknown wallet subcommand '%s'", sub);
}

/* ---- market --------------------------------------------------------------------------------- */

static json_t *model_json(const struct rc_model *m)
{
	json_t *tags = json_array();
	for (size_t i = 0; i < m->ntags; i++)
		json_array_append_new(tags, json_string(m->tags[i]));
	return json_pack("{s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:b}", "id", j_b32(m->id),
	                 "name", m->name, "tags", tags, "owner", j_addr(m->owner), "fee_wei",
	                 j_u256(&m->fee), "stake_wei", j_u256(&m->stake), "ipfs_cid",
	                 j_b32(m->ipfs_cid), "created_at", j_time(m->created_at), "deleted",
	                 m->is_deleted);
}

static json_t *provider_json(const struct rc_provider *p)
{
	return json_pack("{s:o, s:s, s:o, s:o, s:o, s:o, s:b}", "address", j_addr(p->address),
	                 "endpoint", p->endpoint, "stake_wei", j_u256(&p->stake), "created_at",
	                 j_time(p->created_at), "limit_period_end", j_time(p->limit_period_end),
	                 "limit_period_earned_wei", j_u256(&p->limit_period_earned), "deleted",
	                 p->is_deleted);
}

static void join_tags(const struct rc_model *m, char *out, size_t cap)
{
	size_t k = 0;
	out[0] = '\0';
	for (size_t i = 0; i < m->ntags && k + 1 < cap; i++)
		k += (size_t)snprintf(out + k, cap - k, "%s%s", i ? "," : "", m->tags[i]);
}

static int market_models(struct chain *c, int json)
{
	struct rc_model *ms;
	size_t n;
	struct rc_rpc_error e;
	int rc = rc_market_list_models(c->mkt, &ms, &n, &e);
	if (rc != RC_OK)
		return chain_fail("cannot list models", rc, &e);
	if (json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, model_json(&ms[i]));
		print_json(arr);
	} else {
		struct rowset r = {.ncols = 5};
		rows_add(&r, (const char *[]){"ID", "NAME", "TAGS", "OWNER", "STAKE (wei)"});
		for (size_t i = 0; i < n; i++) {
			char id[67], tags[256], ow[RC_ADDR_STR_SIZE], st[RC_U256_DEC_SIZE];
			rc_hex_encode_0x(ms[i].id, 32, id, sizeof id);
			join_tags(&ms[i], tags, sizeof tags);
			rc_addr_format_checksum(ms[i].owner, ow);
			rows_add(&r, (const char *[]){id, ms[i].name, tags, ow,
			                              s_u256(&ms[i].stake, st)});
		}
		rows_print(&r);
	}
	free(ms);
	return CX_OK;
}

static int market_bids(struct chain *c, const char *model, int json)
{
	uint8_t id[32];
	int x = parse_b32("model id", model, id);
	if (x != CX_OK)
		return x;
	struct rc_market_discovery d;
	struct rc_rpc_error e;
	int rc = rc_market_discover(c->mkt, id, 0, &d, &e);
	if (rc != RC_OK)
		return chain_fail("cannot read the bids", rc, &e);
	if (!d.model.created_at) {
		rc_market_discovery_release(&d);
		return ctl_say(CX_NOTFOUND, "no model '%s'", model);
	}
	if (json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < d.noffers; i++) {
			const struct rc_market_offer *of = &d.offers[i];
			json_t *pj = provider_json(&of->provider);
			json_object_set_new(pj, "success_count",
			                    json_integer(of->stats.success_count));
			json_object_set_new(pj, "total_count", json_integer(of->stats.total_count));
			json_array_append_new(
			        arr, json_pack("{s:o, s:o, s:o, s:o, s:o}", "bid_id",
			                       j_b32(of->bid.id), "provider",
			                       j_addr(of->bid.provider), "price_per_second_wei",
			                       j_u256(&of->bid.price_per_second), "created_at",
			                       j_time(of->bid.created_at), "provider_info", pj));
		}
		print_json(json_pack(
		        "{s:o, s:o, s:o, s:o, s:o, s:I}", "model", model_json(&d.model), "bids",
		        arr, "total_mor_supply_wei", j_u256(&d.total_supply), "todays_budget_wei",
		        j_u256(&d.todays_budget), "provider_min_stake_wei",
		        j_u256(&d.provider_min_stake), "round_trips", (json_int_t)d.round_trips));
	} else {
		struct rowset r = {.ncols = 6};
		rows_add(&r, (const char *[]){"BID", "PROVIDER", "PRICE/s (wei)", "ENDPOINT",
		                              "STAKE (wei)", "SESSIONS ok/all"});
		for (size_t i = 0; i < d.noffers; i++) {
			const struct rc_market_offer *of = &d.offers[i];
			char bid[67], pa[RC_ADDR_STR_SIZE], pr[RC_U256_DEC_SIZE],
			        st[RC_U256_DEC_SIZE], ss[32];
			rc_hex_encode_0x(of->bid.id, 32, bid, sizeof bid);
			rc_addr_format_checksum(of->bid.provider, pa);
			snprintf(ss, sizeof ss, "%u/%u", of->stats.success_count,
			         of->stats.total_count);
			rows_add(&r,
			         (const char *[]){bid, pa, s_u256(&of->bid.price_per_second, pr),
			                          of->provider.endpoint,
			                          s_u256(&of->provider.stake, st), ss});
		}
		rows_print(&r);
	}
	rc_market_discovery_release(&d);
	return CX_OK;
}

static int market_provider(struct chain *c, const char *addr_s, int json)
{
	uint8_t a[20];
	int x = parse_addr("provider", addr_s, a);
	if (x != CX_OK)
		return x;
	struct rc_provider p;
	struct rc_rpc_error e;
	int rc = rc_market_get_provider(c->mkt, a, &p, &e);
	if (rc != RC_OK)
		return chain_fail("cannot read the provider", rc, &e);
	if (!p.created_at)
		return ctl_say(CX_NOTFOUND, "no provider '%s'", addr_s);
	if (json) {
		print_json(provider_json(&p));
	} else {
		char as[RC_ADDR_STR_SIZE], b[RC_U256_DEC_SIZE], t[32];
		rc_addr_format_checksum(a, as);
		kv("address", as);
		kv("endpoint", p.endpoint);
		kv("stake (wei)", s_u256(&p.stake, b));
		kv("created", s_time(p.created_at, t));
		kv("limit period ends", s_time(p.limit_period_end, t));
		kv("earned in period (wei)", s_u256(&p.limit_period_earned, b));
		kv("status", p.is_deleted ? "deregistered" : "active");
	}
	return CX_OK;
}

static int market_session(struct chain *c, const char *id_s, int json)
{
	uint8_t id[32];
	int x = parse_b32("session id", id_s, id);
	if (x != CX_OK)
		return x;
	struct rc_session_info s;
	struct rc_rpc_error e;
	int rc = rc_market_get_session(c->mkt, id, &s, &e);
	if (rc != RC_OK)
		return chain_fail("cannot read the session", rc, &e);
	if (!s.found)
		return ctl_say(CX_NOTFOUND, "no session '%s'", id_s);
	const char *status = s.is_active ? "active" : s.closed_at ? "closed" : "inactive";
	if (json) {
		print_json(json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:b, s:b, s:I, s:o}",
		                     "id", j_b32(id), "user", j_addr(s.user), "bid_id",
		                     j_b32(s.bid_id), "stake_wei", j_u256(&s.stake), "opened_at",
		                     j_time(s.opened_at), "ends_at", j_time(s.ends_at), "closed_at",
		                     j_time(s.closed_at), "status", status, "direct_payment",
		                     s.is_direct_payment, "disputed", s.closeout_type == 1,
		                     "closeout_type", (json_int_t)s.closeout_type,
		                     "provider_withdrawn_wei", j_u256(&s.provider_withdrawn)));
	} else {
		char b[67], as[RC_ADDR_STR_SIZE], t[32], dbuf[RC_U256_DEC_SIZE];
		rc_hex_encode_0x(id, 32, b, sizeof b);
		kv("session", b);
		rc_addr_format_checksum(s.user, as);
		kv("user", as);
		rc_hex_encode_0x(s.bid_id, 32, b, sizeof b);
		kv("bid", b);
		kv("stake (wei)", s_u256(&s.stake, dbuf));
		kv("opened", s_time(s.opened_at, t));
		kv("ends", s_time(s.ends_at, t));
		kv("closed", s_time(s.closed_at, t));
		kv("status", status);
		kv("payment", s.is_direct_payment ? "direct" : "staked");
		if (s.closed_at)
			kv("closeout", s.closeout_type == 1 ? "disputed" : "provider receipt");
	}
	return CX_OK;
}

static int cmd_market(struct opts *o, int json)
{
	const char *sub = o->npos ? o->pos[0] : NULL;
	if (!sub)
		return ctl_usage("market needs a subcommand: models, bids, provider, session");
	int want = !strcmp(sub, "models") ? 1 : 2;
	if (strcmp(sub, "models") && strcmp(sub, "bids") && strcmp(sub, "provider") &&
	    strcmp(sub, "session"))
		return ctl_usage("unknown market subcommand '%s'", sub);
	if (o->npos != want)
		return want == 1 ? ctl_usage("unexpected argument '%s'", o->pos[1])
		                 : ctl_usage("market %s needs one argument", sub);
	struct chain c;
	int x = chain_open(o, true, false, &c);
	if (x != CX_OK)
		return x;
	if (!strcmp(sub, "models"))
		x = market_models(&c, json);
	else if (!strcmp(sub, "bids"))
		x = market_bids(&c, o->pos[1], json);
	else if (!strcmp(sub, "provider"))
		x = market_provider(&c, o->pos[1], json);
	else
		x = market_session(&c, o->pos[1], json);
	chain_close(&c);
	return x;
}

/* ---- provider / model / bid (writes) -------------------------------------------------------- */

static int done_tx(int json, const char *key, json_t *val, const char *text)
{
	if (json)
		print_json(json_pack("{s:b, s:o}", "ok", 1, key, val));
	else {
		puts(text);
		json_decref(val);
	}
	return CX_OK;
}

static int cmd_provider(struct opts *o, int json)
{
	if (!o->npos || strcmp(o->pos[0], "register") != 0)
		return ctl_usage("provider needs a subcommand: register");
	if (o->npos > 1)
		return ctl_usage("unexpected argument '%s'", o->pos[1]);
	if (!o->endpoint)
		return ctl_usage("provider register needs --endpoint HOST:PORT");
	if (strstr(o->endpoint, "://") || !strchr(o->endpoint, ':'))
		return ctl_usage("--endpoint is \"host:port\" without a scheme, not '%s'", o->endpoint);
	struct rc_u256 stake;
	int x;
	if (o->stake && (x = parse_u256("stake", o->stake, &stake)) != CX_OK)
		return x;
	struct chain c;
	if ((x = chain_open(o, true, true, &c)) != CX_OK)
		return x;
	struct rc_rpc_error e;
	int rc = RC_OK;
	if (!o->stake)
		rc = rc_market_provider_min_stake(c.mkt, &stake, &e);
	if (rc == RC_OK)
		rc = rc_market_provider_register(c.mkt, c.txm, c.wallet_addr, &stake, o->endpoint,
		                                 &e);
	if (rc != RC_OK)
		x = chain_fail("cannot register the provider", rc, &e);
	else {
		char as[RC_ADDR_STR_SIZE];
		rc_addr_format_checksum(c.wallet_addr, as);
		x = done_tx(json, "provider", json_string(as), as);
	}
	chain_close(&c);
	return x;
}

static int cmd_model(struct opts *o, int json)
{
	if (!o->npos || strcmp(o->pos[0], "register") != 0)
		return ctl_usage("model needs a subcommand: register");
	if (o->npos > 1)
		return ctl_usage("unexpected argument '%s'", o->pos[1]);
	if (!o->name || !*o->name)
		return ctl_usage("model register needs --name NAME");
	struct rc_market_model_reg reg;
	memset(&reg, 0, sizeof reg);
	int x;
	if (o->base_id) {
		if ((x = parse_b32("--base-id", o->base_id, reg.base_model_id)) != CX_OK)
			return x;
	} else {
		rc_keccak256(o->name, strlen(o->name), reg.base_model_id);
	}
	if (o->ipfs && (x = parse_b32("--ipfs", o->ipfs, reg.ipfs_cid)) != CX_OK)
		return x;
	if (o->fee && (x = parse_u256("fee", o->fee, &reg.fee)) != CX_OK)
		return x;
	if (o->stake && (x = parse_u256("stake", o->stake, &reg.stake)) != CX_OK)
		return x;
	struct chain c;
	if ((x = chain_open(o, true, true, &c)) != CX_OK)
		return x;
	struct rc_rpc_error e;
	int rc = RC_OK;
	if (!o->stake)
		rc = rc_market_model_min_stake(c.mkt, &reg.stake, &e);
	reg.owner = c.wallet_addr;
	reg.name = o->name;
	reg.tags = o->tags;
	reg.ntags = o->ntags;
	uint8_t id[32];
	if (rc == RC_OK)
		rc = rc_market_model_register(c.mkt, c.txm, &reg, id, &e);
	if (rc != RC_OK)
		x = chain_fail("cannot register the model", rc, &e);
	else {
		char s[67];
		rc_hex_encode_0x(id, 32, s, sizeof s);
		x = done_tx(json, "model_id", json_string(s), s);
	}
	chain_close(&c);
	return x;
}

static int cmd_bid(struct opts *o, int json)
{
	const char *sub = o->npos ? o->pos[0] : NULL;
	if (!sub || (strcmp(sub, "post") && strcmp(sub, "delete")))
		return ctl_usage("bid needs a subcommand: post, delete");
	int x;
	uint8_t id[32];
	struct rc_u256 price;
	if (!strcmp(sub, "post")) {
		if (o->npos > 1)
			return ctl_usage("unexpected argument '%s'", o->pos[1]);
		if (!o->model || !o->price)
			return ctl_usage("bid post needs --model MODEL_ID and --price WEI_PER_SECOND");
		if ((x = parse_b32("--model", o->model, id)) != CX_OK ||
		    (x = parse_u256("price", o->price, &price)) != CX_OK)
			return x;
	} else {
		if (o->npos != 2)
			return ctl_usage("bid delete needs one BID_ID");
		if ((x = parse_b32("bid id", o->pos[1], id)) != CX_OK)
			return x;
	}
	struct chain c;
	if ((x = chain_open(o, true, true, &c)) != CX_OK)
		return x;
	struct rc_rpc_error e;
	int rc;
	if (!strcmp(sub, "post")) {
		uint8_t bid[32];
		rc = rc_market_post_bid(c.mkt, c.txm, c.wallet_addr, id, &price, bid, &e);
		if (rc != RC_OK)
			x = chain_fail("cannot post the bid", rc, &e);
		else {
			char s[67];
			rc_hex_encode_0x(bid, 32, s, sizeof s);
			x = done_tx(json, "bid_id", json_string(s), s);
		}
	} else {
		struct rc_bid b;
		rc = rc_market_get_bid(c.mkt, id, &b, &e);
		if (rc == RC_OK && !b.created_at)
			x = ctl_say(CX_NOTFOUND, "no bid '%s'", o->pos[1]);
		else if (rc == RC_OK && b.deleted_at)
			x = ctl_say(CX_CONFLICT, "bid '%s' is deleted already", o->pos[1]);
		else if (rc == RC_OK && (rc = rc_market_delete_bid(c.mkt, c.txm, id, &e)) == RC_OK)
			x = done_tx(json, "deleted", j_b32(id), "deleted");
		if (rc != RC_OK)
			x = chain_fail("cannot delete the bid", rc, &e);
	}
	chain_close(&c);
	return x;
}

int ctl_chain_main(const char *cmd, int argc, char **argv, int json)
{
	struct opts o;
	memset(&o, 0, sizeof o);
	int x = parse_opts(argc, argv, &o);
	if (x != CX_OK)
		return x;
	if (!strcmp(cmd, "wallet"))
		return cmd_wallet(&o, json);
	if (!strcmp(cmd, "market"))
		return cmd_market(&o, json);
	if (!strcmp(cmd, "provider"))
		return cmd_provider(&o, json);
	if (!strcmp(cmd, "model"))
		return cmd_model(&o, json);
	if (!strcmp(cmd, "bid"))
		return cmd_bid(&o, json);
	return ctl_usage("unknown command '%s'", cmd);
}

/* ---- for other command groups (ctl_chain.h) -------------------------------------------------- */

int ctl_chain_connect(int argc, char **argv, struct ctl_chain_conn *out)
{
	memset(out, 0, sizeof *out);
	struct opts o;
	memset(&o, 0, sizeof o);
	int x = parse_opts(argc, argv, &o);
	if (x != CX_OK)
		return x;
	if (o.endpoint || o.stake || o.name || o.base_id || o.ipfs || o.fee || o.model || o.price ||
	    o.ntags || o.weak_kdf)
		return ctl_usage("this command takes only the chain options (--rpc, --network, "
		             "--chain-id, --diamond, --mor, --wallet, --passphrase-file, --timeout)");
	struct chain c;
	if ((x = chain_open_keep(&o, true, true, &c, &out->key)) != CX_OK)
		return x;
	out->rpc = c.rpc;
	out->market = c.mkt;
	out->txm = c.txm;
	out->chain_id = c.chain_id;
	memcpy(out->wallet, c.wallet_addr, 20);
	for (int i = 0; i < o.npos; i++)
		out->pos[i] = o.pos[i];
	out->npos = o.npos;
	return CX_OK;
}

void ctl_chain_disconnect(struct ctl_chain_conn *c)
{
	rc_txm_free(c->txm);
	rc_market_free(c->market);
	rc_rpc_free(c->rpc);
	rc_secp_privkey_release(&c->key);
	memset(c, 0, sizeof *c);
}

int ctl_chain_fail(const char *what, int rc, const struct rc_rpc_error *e)
{
	return chain_fail(what, rc, e);
}
