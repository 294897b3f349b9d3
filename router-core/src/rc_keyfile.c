/*
 * Encrypted wallet key file (format in rc_keyfile.h).
 *
 * Why this shape: a line format is trivially parsed strictly (no JSON parser in the trust path of
 * a secret), greppable for the address, and diff-friendly. Argon2id with stored parameters lets
 * a later build raise the cost without breaking old files; XChaCha20's 24-byte nonce is safe to
 * pick at random. The AEAD alone cannot tell a typo in the passphrase from a flipped bit on
 * disk, and an operator needs to know which one happened, hence the separate unkeyed checksum:
 * checksum fine + MAC failure = wrong passphrase.
 *
 * KDF limits read from a file are bounded before use: a hostile or damaged file must not make
 * the process allocate terabytes (memlimit) or spin for hours (opslimit).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <router-core/rc_addr.h>
#include <router-core/rc_hex.h>
#include <router-core/rc_keyfile.h>

#define MAGIC "morgate-keyfile "
#define VERSION "1"
#define KDF_NAME "argon2id13"
#define AEAD_NAME "xchacha20poly1305-ietf"
#define SALT_LEN crypto_pwhash_argon2id_SALTBYTES              /* 16 */
#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES /* 24 */
#define TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES      /* 16 */
#define CT_LEN (RC_SECP_PRIVKEY_LEN + TAG_LEN)
#define CHECK_LEN 16
#define OPS_MAX 16ull
#define MEM_MAX ((size_t)4 << 30)
#define FILE_MAX 4096

static int fail(struct rc_errinfo *err, size_t off, int rc, const char *text)
{
	if (err) {
		err->offset = off;
		snprintf(err->text, sizeof err->text, "%s", text);
	}
	return rc;
}

static bool params_ok(unsigned long long ops, unsigned long long mem)
{
	return ops >= crypto_pwhash_argon2id_OPSLIMIT_MIN && ops <= OPS_MAX &&
	       mem >= crypto_pwhash_argon2id_MEMLIMIT_MIN && mem <= MEM_MAX;
}

static int derive(uint8_t k[32], const char *pass, size_t passlen, const uint8_t *salt,
                  unsigned long long ops, size_t mem)
{
	if (crypto_pwhash(k, 32, pass, passlen, salt, ops, mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
		return RC_ENOMEM; /* libsodium's only runtime failure here is the allocation */
	return RC_OK;
}

int rc_keyfile_seal(const struct rc_secp_privkey *key, const char *pass, size_t passlen,
                    const struct rc_keyfile_params *params, struct rc_buf *out)
{
	struct rc_keyfile_params p = params ? *params : RC_KEYFILE_PARAMS_DEFAULT;
	uint8_t salt[SALT_LEN], nonce[NONCE_LEN], ct[CT_LEN], k[32], addr[20], check[CHECK_LEN];
	char line[256], hex[2 * CT_LEN + 1], saddr[RC_ADDR_STR_SIZE];
	struct rc_buf b = RC_BUF_INIT;
	int rc;

	if (!params_ok(p.opslimit, p.memlimit))
		return RC_EINVAL;
	if (sodium_init() < 0 || rc_secp_privkey_to_address(key, addr) != RC_OK)
		return RC_ECRYPTO;
	randombytes_buf(salt, sizeof salt);
	randombytes_buf(nonce, sizeof nonce);
	rc_addr_format(addr, saddr);

	rc = rc_buf_append(&b, MAGIC VERSION "\naddress ", sizeof MAGIC VERSION "\naddress " - 1);
	if (rc == RC_OK)
		rc = rc_buf_append(&b, saddr, strlen(saddr));
	rc_hex_encode(salt, sizeof salt, hex, sizeof hex);
	snprintf(line, sizeof line, "\nkdf " KDF_NAME " opslimit=%llu memlimit=%zu salt=%s\n",
	         p.opslimit, p.memlimit, hex);
	if (rc == RC_OK)
		rc = rc_buf_append(&b, line, strlen(line));
	rc_hex_encode(nonce, sizeof nonce, hex, sizeof hex);
	snprintf(line, sizeof line, "aead " AEAD_NAME " nonce=%s\n", hex);
	if (rc == RC_OK)
		rc = rc_buf_append(&b, line, strlen(line));
	if (rc != RC_OK)
		goto out;

	if ((rc = derive(k, pass, passlen, salt, p.opslimit, p.memlimit)) != RC_OK)
		goto out;
	/* the header so far is the associated data */
	crypto_aead_xchacha20poly1305_ietf_encrypt(ct, NULL, key->d, RC_SECP_PRIVKEY_LEN,
	                                           (const uint8_t *)b.ptr, b.len, NULL, nonce, k);
	rc_hex_encode(ct, sizeof ct, hex, sizeof hex);
	snprintf(line, sizeof line, "ciphertext %s\n", hex);
	if ((rc = rc_buf_append(&b, line, strlen(line))) != RC_OK)
		goto out;
	crypto_generichash(check, sizeof check, (const uint8_t *)b.ptr, b.len, NULL, 0);
	rc_hex_encode(check, sizeof check, hex, sizeof hex);
	snprintf(line, sizeof line, "check %s\n", hex);
	if ((rc = rc_buf_append(&b, line, strlen(line))) == RC_OK)
		rc = rc_buf_append(out, b.ptr, b.len);
out:
	sodium_memzero(k, sizeof k);
	rc_buf_release(&b);
	return rc;
}

/* A cursor over the text, one line at a time. */
struct lines {
	const char *s;
	size_t len, pos;
};

/* Next line without its "\n"; false at the end or if the last line is unterminated. */
static bool next_line(struct lines *l, const char **line, size_t *n, size_t *at)
{
	if (l->pos >= l->len)
		return false;
	const char *nl = memchr(l->s + l->pos, '\n', l->len - l->pos);
	if (!nl)
		return false;
	*line = l->s + l->pos;
	*n = (size_t)(nl - *line);
	*at = l->pos;
	l->pos += *n + 1;
	return true;
}

/* If line starts with prefix, advance past it. */
static bool eat(const char **line, size_t *n, const char *prefix)
{
	size_t pl = strlen(prefix);
	if (*n < pl || memcmp(*line, prefix, pl) != 0)
		return false;
	*line += pl;
	*n -= pl;
	return true;
}

/* A decimal field "name=<digits>" followed by a space; value in *v. */
static bool eat_num(const char **line, size_t *n, const char *name, unsigned long long *v)
{
	if (!eat(line, n, name))
		return false;
	size_t i = 0;
	unsigned long long x = 0;
	while (i < *n && (*line)[i] >= '0' && (*line)[i] <= '9' && i < 19)
		x = x * 10 + (unsigned long long)((*line)[i++] - '0');
	if (i == 0 || i == *n || (*line)[i] != ' ' || ((*line)[0] == '0' && i > 1))
		return false;
	*line += i + 1;
	*n -= i + 1;
	*v = x;
	return true;
}

int rc_keyfile_open(const char *text, size_t len, const char *pass, size_t passlen,
                    struct rc_secp_privkey *key, uint8_t addr[20], struct rc_errinfo *err)
{
	struct lines l = {text, len, 0};
	const char *ln;
	size_t n, at, aad_len = 0;
	uint8_t want_addr[20], salt[SALT_LEN], nonce[NONCE_LEN], ct[CT_LEN], check[CHECK_LEN],
	        sum[CHECK_LEN], k[32], pt[RC_SECP_PRIVKEY_LEN];
	unsigned long long ops, mem;
	int rc;

	memset(key, 0, sizeof *key);
	if (sodium_init() < 0)
		return RC_ECRYPTO;
	if (!next_line(&l, &ln, &n, &at) || !eat(&ln, &n, MAGIC))
		return fail(err, 0, RC_EPARSE, "not a morgate key file");
	if (n != 1 || ln[0] != VERSION[0])
		return fail(err, sizeof MAGIC - 1, RC_ENOTSUP, "unsupported key file version");

	/* The checksum first: it decides "corrupt" before any field is trusted. */
	size_t end = len;
	if (end < 2 + 6 + 2 * CHECK_LEN || text[end - 1] != '\n')
		return fail(err, len, RC_EPARSE, "key file truncated");
	size_t cl = end - 1 - (6 + 2 * CHECK_LEN);
	if ((cl > 0 && text[cl - 1] != '\n') || memcmp(text + cl, "check ", 6) != 0 ||
	    rc_hex_decode_exact(text + cl + 6, 2 * CHECK_LEN, check, CHECK_LEN, NULL) != RC_OK)
		return fail(err, cl, RC_EPARSE, "missing or malformed check line");
	crypto_generichash(sum, sizeof sum, (const uint8_t *)text, cl, NULL, 0);
	if (sodium_memcmp(sum, check, CHECK_LEN) != 0)
		return fail(err, cl, RC_EPARSE, "checksum mismatch: the key file is corrupt");
	l.len = cl;

	if (!next_line(&l, &ln, &n, &at) || !eat(&ln, &n, "address ") || n != 42 ||
	    rc_addr_parse(want_addr, ln, n, NULL) != RC_OK)
		return fail(err, at, RC_EPARSE, "bad address line");

	if (!next_line(&l, &ln, &n, &at) || !eat(&ln, &n, "kdf "))
		return fail(err, at, RC_EPARSE, "bad kdf line");
	if (!eat(&ln, &n, KDF_NAME " "))
		return fail(err, at + 4, RC_ENOTSUP, "unsupported key derivation function");
	if (!eat_num(&ln, &n, "opslimit=", &ops) || !eat_num(&ln, &n, "memlimit=", &mem) ||
	    !eat(&ln, &n, "salt=") || rc_hex_decode_exact(ln, n, salt, SALT_LEN, NULL) != RC_OK)
		return fail(err, at, RC_EPARSE, "bad kdf line");
	if (!params_ok(ops, mem))
		return fail(err, at, RC_ENOTSUP,
		            "key derivation limits outside the supported range");

	if (!next_line(&l, &ln, &n, &at) || !eat(&ln, &n, "aead "))
		return fail(err, at, RC_EPARSE, "bad aead line");
	if (!eat(&ln, &n, AEAD_NAME " "))
		return fail(err, at + 5, RC_ENOTSUP, "unsupported cipher");
	if (!eat(&ln, &n, "nonce=") || rc_hex_decode_exact(ln, n, nonce, NONCE_LEN, NULL) != RC_OK)
		return fail(err, at, RC_EPARSE, "bad aead line");
	aad_len = l.pos;

	if (!next_line(&l, &ln, &n, &at) || !eat(&ln, &n, "ciphertext ") ||
	    rc_hex_decode_exact(ln, n, ct, CT_LEN, NULL) != RC_OK)
		return fail(err, at, RC_EPARSE, "bad ciphertext line");
	if (l.pos != l.len)
		return fail(err, l.pos, RC_EPARSE, "unexpected line before the check line");

	if ((rc = derive(k, pass, passlen, salt, ops, (size_t)mem)) != RC_OK)
		return rc;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
	            pt, NULL, NULL, ct, CT_LEN, (const uint8_t *)text, aad_len, nonce, k) != 0) {
		rc = fail(err, 0, RC_ECRYPTO, "wrong passphrase");
		goto out;
	}
	uint8_t got[20];
	if ((rc = rc_secp_privkey_from_bytes(key, pt)) != RC_OK ||
	    (rc = rc_secp_privkey_to_address(key, got)) != RC_OK)
		goto out;
	if (memcmp(got, want_addr, 20) != 0) {
		rc = fail(err, 0, RC_EPARSE, "address line does not match the key");
		goto out;
	}
	if (addr)
		memcpy(addr, got, 20);
out:
	if (rc != RC_OK)
		rc_secp_privkey_release(key);
	sodium_memzero(k, sizeof k);
	sodium_memzero(pt, sizeof pt);
	return rc;
}

/* fsync the directory holding path, so the rename itself is durable. */
static int sync_dir(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 1;
	if (n >= sizeof dir)
		return -1;
	if (slash)
		memcpy(dir, path, n ? n : 1); /* "/file" -> "/" */
	else
		dir[0] = '.';
	dir[n ? n : 1] = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	close(fd);
	return r;
}

int rc_keyfile_write(const char *path, const struct rc_secp_privkey *key, const char *pass,
                     size_t passlen, const struct rc_keyfile_params *params, unsigned flags)
{
	struct rc_buf b = RC_BUF_INIT;
	char tmp[PATH_MAX];
	int fd = -1, rc, saved = 0;

	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= sizeof tmp)
		return RC_EINVAL;
	if ((rc = rc_keyfile_seal(key, pass, passlen, params, &b)) != RC_OK)
		return rc;
	rc = RC_EIO;
	fd = mkstemp(tmp);
	if (fd < 0) {
		saved = errno;
		goto out;
	}
	size_t off = 0;
	while (off < b.len) {
		ssize_t w = write(fd, b.ptr + off, b.len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto fail_tmp;
		off += (size_t)w;
	}
	if (fchmod(fd, 0600) != 0 || fsync(fd) != 0)
		goto fail_tmp;
	if (close(fd) != 0) {
		fd = -1;
		goto fail_tmp;
	}
	fd = -1;
	if (flags & RC_KEYFILE_OVERWRITE
	            ? rename(tmp, path) != 0
	            : renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) != 0)
		goto fail_tmp;
	sync_dir(path); /* best effort: the data itself is already durable */
	rc = RC_OK;
	goto out;
fail_tmp:
	saved = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out:
	rc_buf_release(&b);
	if (rc != RC_OK)
		errno = saved;
	return rc;
}

int rc_keyfile_read(const char *path, const char *pass, size_t passlen, struct rc_secp_privkey *key,
                    uint8_t addr[20], struct rc_errinfo *err)
{
	char buf[FILE_MAX + 1];
	size_t len = 0;
	memset(key, 0, sizeof *key);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return RC_EIO;
	for (;;) {
		ssize_t r = read(fd, buf + len, sizeof buf - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int saved = errno;
			close(fd);
			errno = saved;
			return RC_EIO;
		}
		if (r == 0 || (len += (size_t)r) == sizeof buf)
			break;
	}
	close(fd);
	if (len > FILE_MAX)
		return fail(err, FILE_MAX, RC_EPARSE, "key file too large");
	return rc_keyfile_open(buf, len, pass, passlen, key, addr, err);
}
