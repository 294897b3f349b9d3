/*
 * morgatectl: the admin CLI. Tenants, API keys, usage, the key store's schema, the gateway's
 * marketplace sessions (ctl_sessions.c) and the chain commands (ctl_chain.c).
 *
 * Output is a human table by default and JSON with --json. Exit status says what went wrong
 * (see EXIT_* below), with one line on stderr: "morgatectl: <message>". Secrets appear only once,
 * in the output of `key create` and `key rotate`, and are wiped from memory afterwards; a key to
 * check is read from stdin, never from the command line (where `ps` would show it).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include <keystore/ks.h>

#include "ctl_chain.h"
#include "ctl_config.h"
#include "ctl_sessions.h"

enum {
	EXIT_OK = 0,
	EXIT_REJECTED = 1, /* `key verify`: the key is not valid */
	EXIT_USAGE = 2,    /* unknown command or flag, bad value */
	EXIT_NOTFOUND = 3, /* no such tenant, key or key store */
	EXIT_CONFLICT = 4, /* exists already, or the state forbids the change */
	EXIT_STORE = 5     /* the key store failed: locked, read-only, damaged, newer, pepper */
};

#define DEFAULT_DB "./var/morgate.db"

static const char usage_text[] =
	"usage: morgatectl [--db PATH] [--pepper PATH] [--json] [--busy-timeout MS] COMMAND ...\n"
	"\n"
	"key store:\n"
	"  init                          create the database, pepper file and schema (safe to re-run)\n"
	"  migrate [--dry-run]           apply pending schema migrations\n"
	"  check                         verify the database's integrity and schema\n"
	"tenants:\n"
	"  tenant create NAME [--rpm N] [--tpm N] [--concurrency N] [--monthly-tokens N]\n"
	"  tenant list | show NAME | disable NAME | enable NAME\n"
	"  tenant update NAME [--rpm N|none] [--tpm N|none] [--concurrency N|none]\n"
	"                     [--monthly-tokens N|none]\n"
	"keys:\n"
	"  key create --tenant NAME [--name LABEL] [--expires 30d|2027-01-31] [--models a,b]\n"
	"             [--rpm N] [--tpm N] [--concurrency N]     prints the key once\n"
	"  key list [--tenant NAME] | show ID | revoke ID [--reason TEXT]\n"
	"  key update ID [--name LABEL|none] [--expires WHEN|none] [--models a,b|none]\n"
	"                [--rpm N|none] [--tpm N|none] [--concurrency N|none]\n"
	"  key rotate ID [--grace 24h]   new secret; the old one works for the grace period\n"
	"  key verify                    read a key from stdin and print the verdict\n"
	"usage records:\n"
	"  usage [--tenant NAME] [--key ID] [--since YYYY-MM-DD] [--by day|model]\n"
	"gateway config:\n  config check FILE             validate a morgate config, naming the bad field\n"
	"wallet (key file encrypted with $MORGATE_WALLET_PASSPHRASE or --passphrase-file):\n"
	"  wallet new --wallet FILE [--weak-kdf]   create a key (--weak-kdf: tests only)\n"
	"  wallet import --wallet FILE             read a hex private key from stdin\n"
	"  wallet address --wallet FILE | wallet balance [ADDRESS] [--wallet FILE]\n"
	"marketplace (chain options below; writes need --wallet):\n"
	"  market models | market bids MODEL_ID | market provider ADDRESS | market session ID\n"
	"  provider register --endpoint HOST:PORT [--stake WEI]\n"
	"  model register --name NAME [--tag T]... [--base-id HEX] [--ipfs HEX] [--fee WEI]\n"
	"                 [--stake WEI]\n"
	"  bid post --model MODEL_ID --price WEI_PER_SECOND | bid delete BID_ID\n"
	"gateway sessions (the marketplace sessions the gateway recorded in its key store):\n"
	"  sessions list [--state opening|open|retired|closing|closed|failed]\n"
	"  sessions show ID              ID: 0x and at least 6 hex digits, or the local id\n"
	"  sessions close ID [--dispute-ok] [chain options, --wallet: the gateway's]\n"
	"                                close with the provider's receipt; --dispute-ok: with a\n"
	"                                user-signed one when the provider does not answer\n"
	"  chain options: --rpc URL (repeatable; else $MORGATE_RPC, comma-separated)\n"
	"    --network base|base-sepolia|arbitrum|arbitrum-sepolia ($MORGATE_NETWORK) --chain-id N\n"
	"    --diamond ADDR ($MORGATE_DIAMOND) --mor ADDR ($MORGATE_MOR) --wallet FILE\n"
	"    ($MORGATE_WALLET) --passphrase-file FILE --timeout MS\n"
	"\n"
	"The database is --db, else $MORGATE_DB, else " DEFAULT_DB ". The pepper file is --pepper,\n"
	"else $MORGATE_PEPPER_FILE, else the database path with the extension '.pepper'.\n"
	"Exit status: 0 ok, 1 key rejected (key verify), 2 usage error, 3 not found,\n"
	"4 conflict (also: the contract refused a transaction), 5 key store error,\n"
	"6 chain or wallet error (node unreachable, wrong chain id, wrong passphrase).\n";

/* ---- messages ---- */

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("morgatectl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs(" (see 'morgatectl --help')\n", stderr);
	va_end(ap);
	exit(EXIT_USAGE);
}

static int exit_for(int rc)
{
	switch (rc) {
	case KS_OK: return EXIT_OK;
	case KS_EINVAL: return EXIT_USAGE;
	case KS_ENOTFOUND:
	case KS_ENOSTORE: return EXIT_NOTFOUND;
	case KS_ECONFLICT: return EXIT_CONFLICT;
	default: return EXIT_STORE;
	}
}

static int fail(int rc, const struct ks_err *err)
{
	fprintf(stderr, "morgatectl: %s\n", err && err->msg[0] ? err->msg : ks_strerror(rc));
	return exit_for(rc);
}

/* ---- arguments ---- */

struct opt {
	const char *name; /* without "--" */
	int has_value;
	const char *value; /* set when given */
	int given;
};

struct args {
	int npos;
	const char *pos[4];
};

/* Parse argv into positionals and the options in opts (NULL-name terminated). Accepts
 * "--name value" and "--name=value"; anything else starting with "-" is an error. */
static void parse_args(int argc, char **argv, struct opt *opts, int max_pos, struct args *a)
{
	a->npos = 0;
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];
		if (s[0] != '-' || s[1] == '\0') {
			if (a->npos >= max_pos)
				die_usage("unexpected argument '%s'", s);
			a->pos[a->npos++] = s;
			continue;
		}
		if (s[1] != '-')
			die_usage("unknown option '%s'", s);
		const char *name = s + 2, *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		struct opt *o = opts;
		while (o->name && !(strlen(o->name) == nlen && memcmp(o->name, name, nlen) == 0))
			o++;
		if (!o->name)
			die_usage("unknown option '--%.*s'", (int)nlen, name);
		if (o->given)
			die_usage("option '--%s' given twice", o->name);
		o->given = 1;
		if (!o->has_value) {
			if (eq)
				die_usage("option '--%s' takes no value", o->name);
			continue;
		}
		if (eq) {
			o->value = eq + 1;
		} else {
			if (i + 1 >= argc)
				die_usage("option '--%s' needs a value", o->name);
			o->value = argv[++i];
		}
	}
}

static struct opt *find_opt(struct opt *opts, const char *name)
{
	for (; opts->name; opts++)
		if (strcmp(opts->name, name) == 0)
			return opts;
	return NULL;
}

/* A limit: a whole number in range, or "none" (0) where clearing is allowed. */
static int64_t parse_limit(const char *flag, const char *v, int64_t max, int allow_none)
{
	if (allow_none && strcmp(v, "none") == 0)
		return 0;
	int64_t n = 0;
	const char *p = v;
	if (!*p)
		goto bad;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			goto bad;
		n = n * 10 + (*p - '0');
		if (n > max)
			goto bad;
	}
	if (n == 0)
		goto bad;
	return n;
bad:
	die_usage("--%s must be a whole number from 1 to %lld%s, not '%.40s'", flag, (long long)max,
		  allow_none ? " or 'none'" : "", v);
}

static unsigned limits_from_opts(struct opt *opts, struct ks_limits *l, int allow_none)
{
	static const struct {
		const char *name;
		unsigned bit;
		int64_t max;
	} dims[] = {
		{"rpm", KS_LIM_RPM, KS_MAX_RPM},
		{"tpm", KS_LIM_TPM, KS_MAX_TPM},
		{"concurrency", KS_LIM_CONCURRENCY, KS_MAX_CONCURRENCY},
		{"monthly-tokens", KS_LIM_MONTHLY, KS_MAX_MONTHLY_TOKENS},
	};
	unsigned mask = 0;
	memset(l, 0, sizeof *l);
	for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
		struct opt *o = find_opt(opts, dims[i].name);
		if (!o || !o->given)
			continue;
		int64_t v = parse_limit(dims[i].name, o->value, dims[i].max, allow_none);
		mask |= dims[i].bit;
		switch (dims[i].bit) {
		case KS_LIM_RPM: l->rpm = v; break;
		case KS_LIM_TPM: l->tpm = v; break;
		case KS_LIM_CONCURRENCY: l->concurrency = v; break;
		default: l->monthly_tokens = v; break;
		}
	}
	return mask;
}

/* "30d" from now, or an absolute date. */
static int64_t parse_when(const char *v)
{
	struct ks_err e1 = {{0}}, e2 = {{0}};
	int64_t secs, at;
	if (ks_parse_duration(v, &secs, &e1) == KS_OK) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		return ts.tv_sec + secs;
	}
	if (ks_parse_date(v, &at, &e2) == KS_OK)
		return at;
	die_usage("bad --expires '%.40s': use a duration like 30d or 12h, or a date like 2027-01-31",
		  v);
}

/* ---- output ---- */

struct ctx {
	struct ks_options ko;
	int json;
	struct ks_store *ks;
};

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII | JSON_SORT_KEYS);
	if (s)
		puts(s);
	free(s);
	json_decref(j);
}

static json_t *json_time(int64_t t)
{
	char buf[32];
	if (!t)
		return json_null();
	ks_format_time(t, buf);
	return json_string(buf);
}

static json_t *json_limit(int64_t v)
{
	return v ? json_integer(v) : json_null();
}

static void fmt_limit(char *buf, size_t n, int64_t v)
{
	if (v)
		snprintf(buf, n, "%lld", (long long)v);
	else
		snprintf(buf, n, "-");
}

/* A small table printer: rows of string cells, columns padded to the widest cell. */
#define TCOLS 10
struct table {
	int ncols, nrows, cap;
	char *(*cells)[TCOLS];
};

static void table_add(struct table *t, const char *const *cols)
{
	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 32;
		t->cells = realloc(t->cells, (size_t)t->cap * sizeof *t->cells);
		if (!t->cells)
			abort();
	}
	for (int c = 0; c < t->ncols; c++) {
		t->cells[t->nrows][c] = strdup(cols[c] ? cols[c] : "");
		if (!t->cells[t->nrows][c])
			abort();
	}
	t->nrows++;
}

static void table_print(struct table *t)
{
	size_t w[TCOLS] = {0};
	for (int r = 0; r < t->nrows; r++)
		for (int c = 0; c < t->ncols; c++)
			if (strlen(t->cells[r][c]) > w[c])
				w[c] = strlen(t->cells[r][c]);
	for (int r = 0; r < t->nrows; r++) {
		for (int c = 0; c < t->ncols; c++) {
			if (c + 1 < t->ncols)
				printf("%-*s  ", (int)w[c], t->cells[r][c]);
			else
				fputs(t->cells[r][c], stdout);
		}
		putchar('\n');
		for (int c = 0; c < t->ncols; c++)
			free(t->cells[r][c]);
	}
	free(t->cells);
}

/* ---- store ---- */

static int open_store(struct ctx *c, unsigned flags)
{
	struct ks_err err = {{0}};
	c->ko.flags = flags | KS_OPEN_NO_LAST_USED; /* an admin's check is not a use of the key */
	c->ko.readers = 1;
	int rc = ks_open(&c->ko, &c->ks, &err);
	if (rc != KS_OK)
		exit(fail(rc, &err));
	return 0;
}

/* ---- commands: store ---- */

static int cmd_init(struct ctx *c, int argc, char **argv)
{
	struct opt opts[] = {{0}};
	struct args a;
	parse_args(argc, argv, opts, 0, &a);
	open_store(c, KS_OPEN_CREATE | KS_OPEN_MIGRATE);
	int applied, latest;
	ks_schema_version(c->ks, &applied, &latest);
	if (c->json) {
		json_t *j = json_pack("{s:s, s:i}", "db", c->ko.db_path, "schema_version", applied);
		print_json(j);
	} else {
		printf("key store '%s' is ready (schema version %d)\n", c->ko.db_path, applied);
	}
	return EXIT_OK;
}

struct mig_list {
	int dry_run;
	json_t *arr;
	int n;
};

static void mig_cb(void *ctx, int version, const char *name)
{
	struct mig_list *m = ctx;
	m->n++;
	if (m->arr)
		json_array_append_new(m->arr, json_pack("{s:i, s:s}", "version", version, "name", name));
	else
		printf("%s %04d_%s\n", m->dry_run ? "would apply" : "applied", version, name);
}

static int cmd_migrate(struct ctx *c, int argc, char **argv)
{
	struct opt opts[] = {{"dry-run", 0, NULL, 0}, {0}};
	struct args a;
	parse_args(argc, argv, opts, 0, &a);
	int dry = opts[0].given;
	open_store(c, KS_OPEN_NO_MIGRATE_CHECK);
	struct ks_err err = {{0}};
	struct mig_list m = {dry, c->json ? json_array() : NULL, 0};
	int rc = ks_migrate(c->ks, dry, mig_cb, &m, &err);
	if (rc != KS_OK) {
		json_decref(m.arr);
		return fail(rc, &err);
	}
	int applied, latest;
	ks_schema_version(c->ks, &applied, &latest);
	if (c->json) {
		print_json(json_pack("{s:o, s:b, s:i}", dry ? "pending" : "applied", m.arr, "dry_run",
				     dry, "schema_version", applied));
	} else if (m.n == 0) {
		printf("schema is up to date (version %d)\n", applied);
	}
	return EXIT_OK;
}

static int cmd_check(struct ctx *c, int argc, char **argv)
{
	struct opt opts[] = {{0}};
	struct args a;
	parse_args(argc, argv, opts, 0, &a);
	open_store(c, 0);
	struct ks_err err = {{0}};
	int rc = ks_check(c->ks, &err);
	if (rc != KS_OK)
		return fail(rc, &err);
	if (c->json)
		print_json(json_pack("{s:b}", "ok", 1));
	else
		printf("key store '%s' is intact\n", c->ko.db_path);
	return EXIT_OK;
}

/* ---- commands: tenants ---- */

static json_t *tenant_json(const struct ks_tenant *t)
{
	return json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:I, s:o, s:o}", "name", t->name, "status",
			 t->disabled ? "disabled" : "active", "rpm", json_limit(t->limits.rpm), "tpm",
			 json_limit(t->limits.tpm), "concurrency", json_limit(t->limits.concurrency),
			 "monthly_tokens", json_limit(t->limits.monthly_tokens), "active_keys",
			 (json_int_t)t->keys_active, "created_at", json_time(t->created_at),
			 "updated_at", json_time(t->updated_at));
}

static void tenant_row(struct table *tb, const struct ks_tenant *t)
{
	char rpm[24], tpm[24], conc[24], mon[24], keys[24], created[32];
	fmt_limit(rpm, sizeof rpm, t->limits.rpm);
	fmt_limit(tpm, sizeof tpm, t->limits.tpm);
	fmt_limit(conc, sizeof conc, t->limits.concurrency);
	fmt_limit(mon, sizeof mon, t->limits.monthly_tokens);
	snprintf(keys, sizeof keys, "%lld", (long long)t->keys_active);
	ks_format_time(t->created_at, created);
	const char *cols[] = {t->name, t->disabled ? "disabled" : "active", rpm, tpm, conc, mon, keys,
			      created};
	table_add(tb, cols);
}

static const char *const tenant_head[] = {"NAME", "STATUS", "RPM", "TPM", "CONCURRENCY",
					  "MONTHLY_TOKENS", "ACTIVE_KEYS", "CREATED"};

struct list_ctx {
	json_t *arr;
	struct table tb;
};

static int tenant_list_cb(void *ctx, const struct ks_tenant *t)
{
	struct list_ctx *l = ctx;
	if (l->arr)
		json_array_append_new(l->arr, tenant_json(t));
	else
		tenant_row(&l->tb, t);
	return 0;
}

static void show_tenant(struct ctx *c, const struct ks_tenant *t)
{
	if (c->json) {
		print_json(tenant_json(t));
		return;
	}
	struct table tb = {.ncols = 8};
	table_add(&tb, tenant_head);
	tenant_row(&tb, t);
	table_print(&tb);
}

static int cmd_tenant(struct ctx *c, int argc, char **argv)
{
	if (argc < 1)
		die_usage("tenant needs a subcommand: create, list, show, update, disable, enable");
	const char *sub = argv[0];
	struct opt opts[] = {{"rpm", 1, NULL, 0},
			     {"tpm", 1, NULL, 0},
			     {"concurrency", 1, NULL, 0},
			     {"monthly-tokens", 1, NULL, 0},
			     {0}};
	struct opt none[] = {{0}};
	int takes_limits = !strcmp(sub, "create") || !strcmp(sub, "update");
	int takes_name = strcmp(sub, "list") != 0;
	struct args a;
	if (strcmp(sub, "create") && strcmp(sub, "list") && strcmp(sub, "show") &&
	    strcmp(sub, "update") && strcmp(sub, "disable") && strcmp(sub, "enable"))
		die_usage("unknown tenant subcommand '%s'", sub);
	parse_args(argc - 1, argv + 1, takes_limits ? opts : none, takes_name, &a);
	if (takes_name && a.npos != 1)
		die_usage("tenant %s needs a tenant NAME", sub);
	struct ks_err err = {{0}};
	if (takes_name && ks_validate_tenant_name(a.pos[0], &err) != KS_OK)
		return fail(KS_EINVAL, &err);
	struct ks_limits l;
	unsigned mask = takes_limits ? limits_from_opts(opts, &l, !strcmp(sub, "update")) : 0;
	if (!strcmp(sub, "update") && !mask)
		die_usage("tenant update needs at least one of --rpm, --tpm, --concurrency, "
			  "--monthly-tokens");
	open_store(c, 0);
	struct ks_tenant t;
	int rc;
	if (!strcmp(sub, "create")) {
		if ((rc = ks_tenant_create(c->ks, a.pos[0], &l, &t, &err)) != KS_OK)
			return fail(rc, &err);
		if (!c->json)
			printf("created tenant '%s'\n", t.name);
		show_tenant(c, &t);
	} else if (!strcmp(sub, "list")) {
		struct list_ctx lc = {c->json ? json_array() : NULL, {.ncols = 8}};
		if (!c->json)
			table_add(&lc.tb, tenant_head);
		if ((rc = ks_tenant_list(c->ks, tenant_list_cb, &lc, &err)) != KS_OK) {
			json_decref(lc.arr);
			return fail(rc, &err);
		}
		if (c->json)
			print_json(lc.arr);
		else
			table_print(&lc.tb);
	} else if (!strcmp(sub, "show")) {
		if ((rc = ks_tenant_get(c->ks, a.pos[0], &t, &err)) != KS_OK)
			return fail(rc, &err);
		show_tenant(c, &t);
	} else if (!strcmp(sub, "update")) {
		if ((rc = ks_tenant_update(c->ks, a.pos[0], &l, mask, &err)) != KS_OK ||
		    (rc = ks_tenant_get(c->ks, a.pos[0], &t, &err)) != KS_OK)
			return fail(rc, &err);
		show_tenant(c, &t);
	} else {
		int dis = !strcmp(sub, "disable");
		if ((rc = ks_tenant_set_disabled(c->ks, a.pos[0], dis, &err)) != KS_OK ||
		    (rc = ks_tenant_get(c->ks, a.pos[0], &t, &err)) != KS_OK)
			return fail(rc, &err);
		if (!c->json)
			printf("tenant '%s' is %s\n", t.name, dis ? "disabled" : "enabled");
		else
			show_tenant(c, &t);
	}
	return EXIT_OK;
}

/* ---- commands: keys ---- */

static json_t *key_json(const struct ks_key *k)
{
	json_t *models = json_array();
	if (k->models[0]) {
		const char *p = k->models;
		for (;;) {
			const char *comma = strchr(p, ',');
			size_t n = comma ? (size_t)(comma - p) : strlen(p);
			json_array_append_new(models, json_stringn(p, n));
			if (!comma)
				break;
			p = comma + 1;
		}
	}
	json_t *j = json_pack(
		"{s:s, s:s, s:s?, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
		"id", k->id, "tenant", k->tenant, "name", k->name[0] ? k->name : NULL, "status",
		ks_key_status_name(k->status), "hint", k->hint, "models", models, "rpm",
		json_limit(k->limits.rpm), "tpm", json_limit(k->limits.tpm), "concurrency",
		json_limit(k->limits.concurrency), "created_at", json_time(k->created_at),
		"updated_at", json_time(k->updated_at), "expires_at", json_time(k->expires_at),
		"revoked_at", json_time(k->revoked_at), "rotated_at", json_time(k->rotated_at),
		"previous_secret_valid_until", json_time(k->prev_valid_until), "last_used_at",
		json_time(k->last_used_at));
	if (k->revoke_reason[0])
		json_object_set_new(j, "revoke_reason", json_string(k->revoke_reason));
	return j;
}

static const char *const key_head[] = {"ID", "TENANT", "NAME", "STATUS", "KEY", "MODELS",
				       "EXPIRES", "LAST_USED", "CREATED"};

static void key_row(struct table *tb, const struct ks_key *k)
{
	char shown[32], expires[32], used[32], created[32];
	snprintf(shown, sizeof shown, "sk-mor-%.4s...%s", k->id, k->hint);
	ks_format_time(k->expires_at, expires);
	ks_format_time(k->last_used_at, used);
	ks_format_time(k->created_at, created);
	const char *cols[] = {k->id, k->tenant, k->name[0] ? k->name : "-",
			      ks_key_status_name(k->status), shown, k->models[0] ? k->models : "*",
			      expires, used, created};
	table_add(tb, cols);
}

static int key_list_cb(void *ctx, const struct ks_key *k)
{
	struct list_ctx *l = ctx;
	if (l->arr)
		json_array_append_new(l->arr, key_json(k));
	else
		key_row(&l->tb, k);
	return 0;
}

static void show_key(struct ctx *c, const struct ks_key *k)
{
	if (c->json) {
		print_json(key_json(k));
		return;
	}
	char rpm[24], tpm[24], conc[24], t[32];
	fmt_limit(rpm, sizeof rpm, k->limits.rpm);
	fmt_limit(tpm, sizeof tpm, k->limits.tpm);
	fmt_limit(conc, sizeof conc, k->limits.concurrency);
	printf("id:           %s\n", k->id);
	printf("tenant:       %s\n", k->tenant);
	printf("name:         %s\n", k->name[0] ? k->name : "-");
	printf("status:       %s\n", ks_key_status_name(k->status));
	if (k->revoke_reason[0])
		printf("reason:       %s\n", k->revoke_reason);
	printf("key:          sk-mor-%s_...%s\n", k->id, k->hint);
	printf("models:       %s\n", k->models[0] ? k->models : "* (all)");
	printf("limits:       rpm %s, tpm %s, concurrency %s (unset: the tenant's)\n", rpm, tpm, conc);
	ks_format_time(k->created_at, t);
	printf("created:      %s\n", t);
	ks_format_time(k->expires_at, t);
	printf("expires:      %s\n", t);
	if (k->revoked_at) {
		ks_format_time(k->revoked_at, t);
		printf("revoked:      %s\n", t);
	}
	if (k->rotated_at) {
		ks_format_time(k->rotated_at, t);
		printf("rotated:      %s\n", t);
	}
	if (k->prev_valid_until) {
		ks_format_time(k->prev_valid_until, t);
		printf("old secret:   valid until %s\n", t);
	}
	ks_format_time(k->last_used_at, t);
	printf("last used:    %s\n", t);
}

/* Print a freshly issued secret once, then wipe it. */
static void print_secret(struct ctx *c, const struct ks_key *k, char key[KS_KEY_LEN + 1],
			 const char *verb)
{
	if (c->json) {
		json_t *j = key_json(k);
		json_object_set_new(j, "key", json_string(key));
		print_json(j);
	} else {
		printf("%s key %s for tenant '%s'\n", verb, k->id, k->tenant);
		printf("key: %s\n", key);
		printf("this is the only time the key is shown: store it now\n");
	}
	fflush(stdout);
	sodium_memzero(key, KS_KEY_LEN + 1);
}

static int cmd_key_verify(struct ctx *c)
{
	char buf[4096];
	size_t n = fread(buf, 1, sizeof buf - 1, stdin);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
		     buf[n - 1] == '\t'))
		n--;
	size_t start = 0;
	while (start < n && (buf[start] == ' ' || buf[start] == '\t'))
		start++;
	open_store(c, 0);
	struct ks_key_info info;
	int rc = ks_key_verify(c->ks, buf + start, n - start, &info);
	sodium_memzero(buf, sizeof buf);
	const char *verdict = rc == KS_OK ? "valid" : "rejected";
	if (rc != KS_OK && rc != KS_EMALFORMED && rc != KS_EUNKNOWN && rc != KS_EREVOKED &&
	    rc != KS_EEXPIRED && rc != KS_ETENANT_DISABLED) {
		struct ks_err err;
		snprintf(err.msg, sizeof err.msg, "cannot verify: %s", ks_strerror(rc));
		return fail(rc, &err);
	}
	if (c->json) {
		json_t *j = json_pack("{s:s, s:s}", "verdict", verdict, "reason",
				      rc == KS_OK ? "ok" : ks_strerror(rc));
		if (rc == KS_OK) {
			json_object_set_new(j, "id", json_string(info.key_id));
			json_object_set_new(j, "tenant", json_string(info.tenant));
		}
		print_json(j);
	} else if (rc == KS_OK) {
		printf("valid: key %s of tenant '%s'\n", info.key_id, info.tenant);
	} else {
		printf("rejected: %s\n", ks_strerror(rc));
	}
	return rc == KS_OK ? EXIT_OK : EXIT_REJECTED;
}

static int cmd_key(struct ctx *c, int argc, char **argv)
{
	if (argc < 1)
		die_usage("key needs a subcommand: create, list, show, update, revoke, rotate, verify");
	const char *sub = argv[0];
	struct opt opts[] = {{"tenant", 1, NULL, 0},      {"name", 1, NULL, 0},
			     {"expires", 1, NULL, 0},     {"models", 1, NULL, 0},
			     {"rpm", 1, NULL, 0},         {"tpm", 1, NULL, 0},
			     {"concurrency", 1, NULL, 0}, {0}};
	struct opt list_opts[] = {{"tenant", 1, NULL, 0}, {0}};
	struct opt revoke_opts[] = {{"reason", 1, NULL, 0}, {0}};
	struct opt rotate_opts[] = {{"grace", 1, NULL, 0}, {0}};
	struct opt none[] = {{0}};
	struct args a;
	struct ks_err err = {{0}};
	struct ks_key k;
	char key[KS_KEY_LEN + 1];
	int rc;

	if (!strcmp(sub, "create") || !strcmp(sub, "update")) {
		int create = !strcmp(sub, "create");
		if (!create)
			opts[0].name = "-tenant-not-allowed"; /* a key never changes tenant */
		parse_args(argc - 1, argv + 1, opts, create ? 0 : 1, &a);
		if (!create && a.npos != 1)
			die_usage("key update needs a key ID");
		struct ks_key_spec spec = {0};
		unsigned mask = limits_from_opts(opts, &spec.limits, !create);
		if (create) {
			if (!opts[0].given)
				die_usage("key create needs --tenant NAME");
			spec.tenant = opts[0].value;
		}
		if (opts[1].given) {
			mask |= KS_KEY_SET_NAME;
			spec.name = !create && !strcmp(opts[1].value, "none") ? NULL : opts[1].value;
			if (spec.name && ks_validate_label(spec.name, &err) != KS_OK)
				return fail(KS_EINVAL, &err);
		}
		if (opts[2].given) {
			mask |= KS_KEY_SET_EXPIRES;
			spec.expires_at = !create && !strcmp(opts[2].value, "none")
						  ? 0
						  : parse_when(opts[2].value);
		}
		if (opts[3].given) {
			mask |= KS_KEY_SET_MODELS;
			spec.models = !create && !strcmp(opts[3].value, "none") ? NULL : opts[3].value;
		}
		if (!create && !mask)
			die_usage("key update needs something to change (--name, --expires, --models, "
				  "--rpm, --tpm, --concurrency)");
		open_store(c, 0);
		if (create) {
			if ((rc = ks_key_create(c->ks, &spec, key, &k, &err)) != KS_OK)
				return fail(rc, &err);
			print_secret(c, &k, key, "created");
			return EXIT_OK;
		}
		if ((rc = ks_key_update(c->ks, a.pos[0], &spec, mask, &err)) != KS_OK ||
		    (rc = ks_key_get(c->ks, a.pos[0], &k, &err)) != KS_OK)
			return fail(rc, &err);
		show_key(c, &k);
		return EXIT_OK;
	}
	if (!strcmp(sub, "list")) {
		parse_args(argc - 1, argv + 1, list_opts, 0, &a);
		open_store(c, 0);
		struct list_ctx lc = {c->json ? json_array() : NULL, {.ncols = 9}};
		if (!c->json)
			table_add(&lc.tb, key_head);
		if ((rc = ks_key_list(c->ks, list_opts[0].given ? list_opts[0].value : NULL,
				      key_list_cb, &lc, &err)) != KS_OK) {
			json_decref(lc.arr);
			if (!c->json)
				table_print(&lc.tb);
			return fail(rc, &err);
		}
		if (c->json)
			print_json(lc.arr);
		else
			table_print(&lc.tb);
		return EXIT_OK;
	}
	if (!strcmp(sub, "verify")) {
		parse_args(argc - 1, argv + 1, none, 0, &a);
		return cmd_key_verify(c);
	}
	struct opt *o = !strcmp(sub, "revoke") ? revoke_opts : !strcmp(sub, "rotate") ? rotate_opts
											: none;
	if (strcmp(sub, "show") && strcmp(sub, "revoke") && strcmp(sub, "rotate"))
		die_usage("unknown key subcommand '%s'", sub);
	parse_args(argc - 1, argv + 1, o, 1, &a);
	if (a.npos != 1)
		die_usage("key %s needs a key ID", sub);
	if (!strcmp(sub, "show")) {
		open_store(c, 0);
		if ((rc = ks_key_get(c->ks, a.pos[0], &k, &err)) != KS_OK)
			return fail(rc, &err);
		show_key(c, &k);
	} else if (!strcmp(sub, "revoke")) {
		open_store(c, 0);
		if ((rc = ks_key_revoke(c->ks, a.pos[0], o[0].value, &err)) != KS_OK ||
		    (rc = ks_key_get(c->ks, a.pos[0], &k, &err)) != KS_OK)
			return fail(rc, &err);
		if (c->json)
			show_key(c, &k);
		else
			printf("revoked key %s of tenant '%s'\n", k.id, k.tenant);
	} else {
		int64_t grace = 0;
		if (o[0].given && ks_parse_duration(o[0].value, &grace, &err) != KS_OK)
			die_usage("%s", err.msg);
		open_store(c, 0);
		if ((rc = ks_key_rotate(c->ks, a.pos[0], grace, key, &err)) != KS_OK ||
		    (rc = ks_key_get(c->ks, a.pos[0], &k, &err)) != KS_OK) {
			sodium_memzero(key, sizeof key);
			return fail(rc, &err);
		}
		print_secret(c, &k, key, "rotated");
	}
	return EXIT_OK;
}

/* ---- commands: usage ---- */

static int usage_cb(void *ctx, const struct ks_usage_row *r)
{
	struct list_ctx *l = ctx;
	if (l->arr) {
		json_array_append_new(l->arr, json_pack("{s:s, s:I, s:I, s:I}", "group", r->group,
							"requests", (json_int_t)r->requests,
							"prompt_tokens", (json_int_t)r->prompt_tokens,
							"completion_tokens",
							(json_int_t)r->completion_tokens));
		return 0;
	}
	char req[24], pt[24], ct[24];
	snprintf(req, sizeof req, "%lld", (long long)r->requests);
	snprintf(pt, sizeof pt, "%lld", (long long)r->prompt_tokens);
	snprintf(ct, sizeof ct, "%lld", (long long)r->completion_tokens);
	const char *cols[] = {r->group, req, pt, ct};
	table_add(&l->tb, cols);
	return 0;
}

static int cmd_usage(struct ctx *c, int argc, char **argv)
{
	struct opt opts[] = {{"tenant", 1, NULL, 0},
			     {"key", 1, NULL, 0},
			     {"since", 1, NULL, 0},
			     {"by", 1, NULL, 0},
			     {0}};
	struct args a;
	parse_args(argc, argv, opts, 0, &a);
	struct ks_usage_filter f = {opts[0].value, opts[1].value, opts[2].value, 0};
	if (opts[3].given) {
		if (!strcmp(opts[3].value, "model"))
			f.by_model = 1;
		else if (strcmp(opts[3].value, "day") != 0)
			die_usage("--by must be 'day' or 'model', not '%.40s'", opts[3].value);
	}
	struct ks_err err = {{0}};
	int64_t ignored;
	if (f.since && ks_parse_date(f.since, &ignored, &err) != KS_OK)
		die_usage("%s", err.msg);
	open_store(c, 0);
	struct list_ctx lc = {c->json ? json_array() : NULL, {.ncols = 4}};
	const char *head[] = {f.by_model ? "MODEL" : "DAY", "REQUESTS", "PROMPT_TOKENS",
			      "COMPLETION_TOKENS"};
	if (!c->json)
		table_add(&lc.tb, head);
	int rc = ks_usage_query(c->ks, &f, usage_cb, &lc, &err);
	if (rc != KS_OK) {
		json_decref(lc.arr);
		for (int r = 0; r < lc.tb.nrows; r++)
			for (int col = 0; col < lc.tb.ncols; col++)
				free(lc.tb.cells[r][col]);
		free(lc.tb.cells);
		return fail(rc, &err);
	}
	if (c->json)
		print_json(lc.arr);
	else
		table_print(&lc.tb);
	return EXIT_OK;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
	struct ctx c;
	memset(&c, 0, sizeof c);
	c.ko.db_path = getenv("MORGATE_DB");
	c.ko.pepper_path = getenv("MORGATE_PEPPER_FILE");
	if (!c.ko.db_path || !*c.ko.db_path)
		c.ko.db_path = DEFAULT_DB;
	if (c.ko.pepper_path && !*c.ko.pepper_path)
		c.ko.pepper_path = NULL;

	/* Global options come before the command. */
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *s = argv[i];
		const char *val = NULL;
		const char *eq = strchr(s, '=');
		size_t nlen = eq ? (size_t)(eq - s) : strlen(s);
#define IS(opt) (nlen == sizeof(opt) - 1 && memcmp(s, opt, nlen) == 0)
		if (IS("-h") || IS("--help")) {
			fputs(usage_text, stdout);
			return EXIT_OK;
		}
		if (IS("--version")) {
			puts("morgatectl 0.1.0");
			return EXIT_OK;
		}
		if (IS("--json")) {
			c.json = 1;
			continue;
		}
		if (!IS("--db") && !IS("--pepper") && !IS("--busy-timeout"))
			die_usage("unknown option '%.*s'", (int)nlen, s);
		if (eq)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else
			die_usage("option '%.*s' needs a value", (int)nlen, s);
		if (IS("--db"))
			c.ko.db_path = val;
		else if (IS("--pepper"))
			c.ko.pepper_path = val;
		else
			c.ko.busy_timeout_ms = (int)parse_limit("busy-timeout", val, 3600000, 0);
#undef IS
	}
	if (!*c.ko.db_path)
		die_usage("--db needs a path");
	if (i >= argc) {
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[i];
	int rest = argc - i - 1;
	char **rargv = argv + i + 1;
	int rc;
	if (!strcmp(cmd, "init"))
		rc = cmd_init(&c, rest, rargv);
	else if (!strcmp(cmd, "migrate"))
		rc = cmd_migrate(&c, rest, rargv);
	else if (!strcmp(cmd, "check"))
		rc = cmd_check(&c, rest, rargv);
	else if (!strcmp(cmd, "tenant"))
		rc = cmd_tenant(&c, rest, rargv);
	else if (!strcmp(cmd, "key"))
		rc = cmd_key(&c, rest, rargv);
	else if (!strcmp(cmd, "usage"))
		rc = cmd_usage(&c, rest, rargv);
	else if (!strcmp(cmd, "wallet") || !strcmp(cmd, "market") || !strcmp(cmd, "provider") ||
		 !strcmp(cmd, "model") || !strcmp(cmd, "bid"))
		rc = ctl_chain_main(cmd, rest, rargv, c.json);
	else if (!strcmp(cmd, "config"))
		rc = ctl_config_main(rest, rargv, c.json);
	else if (!strcmp(cmd, "sessions"))
		rc = ctl_sessions_main(&c.ko, rest, rargv, c.json);
	else if (!strcmp(cmd, "help"))
		return fputs(usage_text, stdout), EXIT_OK;
	else
		die_usage("unknown command '%s'", cmd);
	ks_close(c.ks);
	if (fflush(stdout) != 0 && rc == EXIT_OK) {
		fprintf(stderr, "morgatectl: cannot write output: %s\n", strerror(errno));
		rc = EXIT_STORE;
	}
	return rc;
}
