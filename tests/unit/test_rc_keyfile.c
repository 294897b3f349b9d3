/*
 * rc_keyfile: seal/open round trip, the three distinct failure classes (wrong passphrase,
 * corrupt file, unsupported version/KDF/limits), and the file functions (mode 0600, no
 * overwrite unless asked, no temporary left behind). Uses RC_KEYFILE_PARAMS_TEST_ONLY so
 * Argon2id costs microseconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include <router-core/rc_hex.h>
#include <router-core/rc_keyfile.h>

#define USER_PRIV "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
#define USER_ADDR "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
#define PASS "correct horse battery staple"

static const struct rc_keyfile_params fast = RC_KEYFILE_PARAMS_TEST_ONLY;

static void seal(struct rc_buf *b)
{
	struct rc_secp_privkey k;
	assert_int_equal(rc_secp_privkey_from_hex(&k, USER_PRIV, 64, NULL), RC_OK);
	assert_int_equal(rc_keyfile_seal(&k, PASS, strlen(PASS), &fast, b), RC_OK);
	rc_secp_privkey_release(&k);
}

static int open_text(const char *t, size_t n, const char *pass, struct rc_errinfo *err)
{
	struct rc_secp_privkey k;
	int rc = rc_keyfile_open(t, n, pass, strlen(pass), &k, NULL, err);
	rc_secp_privkey_release(&k);
	return rc;
}

/* Replace the check line so the text passes the checksum again (simulates a deliberate edit
 * or a file written by another version). */
static void fix_checksum(struct rc_buf *b)
{
	char *check = strstr(b->ptr, "check ");
	assert_non_null(check);
	size_t body = (size_t)(check - b->ptr);
	uint8_t sum[16];
	crypto_generichash(sum, sizeof sum, (const uint8_t *)b->ptr, body, NULL, 0);
	rc_hex_encode(sum, 16, check + 6, 33);
	check[38] = '\n';
}

/* Replace the first occurrence of from by to in b. */
static void replace(struct rc_buf *b, const char *from, const char *to)
{
	char *at = strstr(b->ptr, from);
	assert_non_null(at);
	struct rc_buf n = RC_BUF_INIT;
	size_t pre = (size_t)(at - b->ptr), fl = strlen(from);
	assert_int_equal(rc_buf_append(&n, b->ptr, pre), RC_OK);
	assert_int_equal(rc_buf_append(&n, to, strlen(to)), RC_OK);
	assert_int_equal(rc_buf_append(&n, at + fl, b->len - pre - fl), RC_OK);
	rc_buf_release(b);
	*b = n;
}

static void test_rc_keyfile__round_trip(void **state)
{
	(void)state;
	struct rc_buf b = RC_BUF_INIT;
	struct rc_secp_privkey k;
	uint8_t addr[20];
	char a[43];
	seal(&b);
	assert_int_equal(strncmp(b.ptr, "morgate-keyfile 1\naddress " USER_ADDR "\nkdf argon2id13 "
					"opslimit=1 memlimit=8192 salt=",
				 strlen("morgate-keyfile 1\naddress " USER_ADDR "\nkdf argon2id13 "
					"opslimit=1 memlimit=8192 salt=")),
			 0);
	assert_int_equal(rc_keyfile_open(b.ptr, b.len, PASS, strlen(PASS), &k, addr, NULL), RC_OK);
	rc_hex_encode_0x(addr, 20, a, sizeof a);
	assert_string_equal(a, USER_ADDR);
	char hex[65];
	rc_hex_encode(k.d, 32, hex, sizeof hex);
	assert_string_equal(hex, USER_PRIV);
	rc_secp_privkey_release(&k);
	/* a second seal uses a fresh salt and nonce */
	struct rc_buf b2 = RC_BUF_INIT;
	seal(&b2);
	assert_int_equal(b.len, b2.len);
	assert_memory_not_equal(b.ptr, b2.ptr, b.len);
	/* the plaintext key never appears in the file */
	assert_null(strstr(b.ptr, USER_PRIV));
	rc_buf_release(&b);
	rc_buf_release(&b2);
}

static void test_rc_keyfile__wrong_passphrase(void **state)
{
	(void)state;
	struct rc_buf b = RC_BUF_INIT;
	struct rc_errinfo err;
	struct rc_secp_privkey k;
	seal(&b);
	assert_int_equal(open_text(b.ptr, b.len, "correct horse battery stapl", &err), RC_ECRYPTO);
	assert_string_equal(err.text, "wrong passphrase");
	assert_int_equal(rc_keyfile_open(b.ptr, b.len, "", 0, &k, NULL, &err), RC_ECRYPTO);
	uint8_t zero[32] = {0};
	assert_memory_equal(k.d, zero, 32);
	rc_buf_release(&b);
}

static void test_rc_keyfile__corruption_is_not_a_wrong_passphrase(void **state)
{
	(void)state;
	struct rc_buf b = RC_BUF_INIT;
	struct rc_errinfo err;
	seal(&b);
	/* flip one bit anywhere before the check line: always "corrupt", never "passphrase" */
	size_t body = (size_t)(strstr(b.ptr, "check ") - b.ptr);
	for (size_t i = 0; i < body; i += 7) {
		b.ptr[i] ^= 0x01;
		assert_int_equal(open_text(b.ptr, b.len, PASS, &err), RC_EPARSE);
		b.ptr[i] ^= 0x01;
	}
	assert_int_equal(open_text(b.ptr, b.len, PASS, &err), RC_OK);
	/* truncation and garbage */
	assert_int_equal(open_text(b.ptr, b.len - 1, PASS, &err), RC_EPARSE);
	assert_int_equal(open_text(b.ptr, body, PASS, &err), RC_EPARSE);
	assert_int_equal(open_text("", 0, PASS, &err), RC_EPARSE);
	assert_int_equal(open_text("{\"version\":3}", 13, PASS, &err), RC_EPARSE);
	assert_string_equal(err.text, "not a morgate key file");
	/* a deliberately edited header with its checksum fixed fails authentication */
	char *mem = strstr(b.ptr, "salt=");
	mem[5] = mem[5] == 'a' ? 'b' : 'a';
	fix_checksum(&b);
	assert_int_equal(open_text(b.ptr, b.len, PASS, &err), RC_ECRYPTO);
	rc_buf_release(&b);
}

static void test_rc_keyfile__unsupported_versions_and_limits(void **state)
{
	(void)state;
	struct rc_buf b = RC_BUF_INIT;
	struct rc_errinfo err;
	seal(&b);
	b.ptr[16] = '2'; /* "morgate-keyfile 2" */
	fix_checksum(&b);
	assert_int_equal(open_text(b.ptr, b.len, PASS, &err), RC_ENOTSUP);
	assert_int_equal(err.offset, 16);
	rc_buf_release(&b);

	seal(&b);
	memcpy(strstr(b.ptr, "argon2id13"), "scrypt0013", 10);
	fix_checksum(&b);
	assert_int_equal(open_text(b.ptr, b.len, PASS, &err), RC_ENOTSUP);
	rc_buf_release(&b);

	seal(&b);
	memcpy(strstr(b.ptr, "xchacha20poly1305"), "aes256gcm00000000", 17);
	fix_checksum(&b);
	assert_int_equal(open_text(b.ptr, b.len, PASS, &err), RC_ENOTSUP);
	rc_buf_release(&b);

	/* KDF limits a hostile file could use to exhaust memory or time */
	static const char *const edits[] = {"opslimit=99 memlimit=8192 ",
					    "opslimit=1 memlimit=1099511627776 ",
					    "opslimit=1 memlimit=1024 "};
	for (size_t i = 0; i < 3; i++) {
		seal(&b);
		replace(&b, "opslimit=1 memlimit=8192 ", edits[i]);
		fix_checksum(&b);
		assert_int_equal(open_text(b.ptr, b.len, PASS, &err), RC_ENOTSUP);
		rc_buf_release(&b);
	}
	/* a malformed number is damage, not an unsupported variant */
	seal(&b);
	replace(&b, "opslimit=1 ", "opslimit=01 ");
	fix_checksum(&b);
	assert_int_equal(open_text(b.ptr, b.len, PASS, &err), RC_EPARSE);
	rc_buf_release(&b);

	struct rc_secp_privkey k;
	struct rc_keyfile_params weak = {0, 8192};
	assert_int_equal(rc_secp_privkey_from_hex(&k, USER_PRIV, 64, NULL), RC_OK);
	assert_int_equal(rc_keyfile_seal(&k, PASS, strlen(PASS), &weak, &b), RC_EINVAL);
	assert_int_equal(b.len, 0);
	rc_secp_privkey_release(&k);
}

static void tmpdir(char *dir, size_t n)
{
	snprintf(dir, n, "%s/rc_keyfile_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(dir));
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void test_rc_keyfile__write_read_file(void **state)
{
	(void)state;
	char dir[256], path[300];
	struct rc_secp_privkey k, back, other;
	struct stat st;
	uint8_t addr[20];
	tmpdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/wallet.key", dir);
	assert_int_equal(rc_secp_privkey_from_hex(&k, USER_PRIV, 64, NULL), RC_OK);
	assert_int_equal(rc_keyfile_write(path, &k, PASS, strlen(PASS), &fast, 0), RC_OK);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(count_entries(dir), 1);
	assert_int_equal(rc_keyfile_read(path, PASS, strlen(PASS), &back, addr, NULL), RC_OK);
	assert_memory_equal(back.d, k.d, 32);
	/* no silent overwrite of a wallet */
	assert_int_equal(rc_secp_privkey_generate(&other), RC_OK);
	errno = 0;
	assert_int_equal(rc_keyfile_write(path, &other, PASS, strlen(PASS), &fast, 0), RC_EIO);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(count_entries(dir), 1);
	assert_int_equal(rc_keyfile_read(path, PASS, strlen(PASS), &back, NULL, NULL), RC_OK);
	assert_memory_equal(back.d, k.d, 32);
	assert_int_equal(rc_keyfile_write(path, &other, PASS, strlen(PASS), &fast,
					  RC_KEYFILE_OVERWRITE),
			 RC_OK);
	assert_int_equal(rc_keyfile_read(path, PASS, strlen(PASS), &back, NULL, NULL), RC_OK);
	assert_memory_equal(back.d, other.d, 32);
	assert_int_equal(count_entries(dir), 1);
	/* missing file, unwritable directory */
	char missing[320];
	snprintf(missing, sizeof missing, "%s/nope", dir);
	assert_int_equal(rc_keyfile_read(missing, PASS, strlen(PASS), &back, NULL, NULL), RC_EIO);
	snprintf(missing, sizeof missing, "%s/no/such/dir/w.key", dir);
	assert_int_equal(rc_keyfile_write(missing, &k, PASS, strlen(PASS), &fast, 0), RC_EIO);
	assert_int_equal(errno, ENOENT);
	unlink(path);
	rmdir(dir);
	rc_secp_privkey_release(&k);
	rc_secp_privkey_release(&back);
	rc_secp_privkey_release(&other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rc_keyfile__round_trip),
		cmocka_unit_test(test_rc_keyfile__wrong_passphrase),
		cmocka_unit_test(test_rc_keyfile__corruption_is_not_a_wrong_passphrase),
		cmocka_unit_test(test_rc_keyfile__unsupported_versions_and_limits),
		cmocka_unit_test(test_rc_keyfile__write_read_file),
	};
	return cmocka_run_group_tests_name("rc_keyfile", tests, NULL, NULL);
}
