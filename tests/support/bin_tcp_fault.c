/*
 * tcp_fault PORT TARGET_HOST:TARGET_PORT MODE [--claim FILE]: a fault-injecting TCP proxy for
 * the marketplace end-to-end tests, only for faults a real component cannot be made to produce.
 * It listens on 127.0.0.1:PORT and forwards every connection to the target, byte for byte in
 * the client -> target direction. MODE applies to the target -> client direction:
 *
 *   pass         forward unchanged
 *   corrupt-sig  after every `"signature":"0x` (the MOR-RPC envelopes of morpheus-protocol §2.2,
 *                §2.5: the signature field is plain JSON even when the message is encrypted), the
 *                first hex digit is replaced by the next one (0->1 ... f->0), so the provider's
 *                signatures no longer verify while everything else stays well-formed
 *   blackhole    the connection is accepted and the request read, but nothing is forwarded and
 *                nothing ever comes back (a provider that hangs: a real node always answers)
 *
 * --claim FILE (with a fault mode): several proxies share FILE; the first one to see a connection
 * creates it (O_EXCL) and applies its fault from then on, the others pass. A test puts one proxy
 * in front of each provider and does not need to know which provider the gateway will try first.
 *
 * The match is a byte-wise state machine, so a pattern split across reads is still found.
 * One thread per connection, poll() on both sockets. Every corruption is counted on stderr
 * ("tcp_fault: corrupted N"); there is no control port: the test reads stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum mode { MODE_PASS, MODE_CORRUPT_SIG, MODE_BLACKHOLE };

static enum mode mode;
static const char *claim_file;
static atomic_int claim_state; /* 0 undecided, 1 this proxy corrupts, 2 another one does */
static struct sockaddr_in target;
static atomic_long n_corrupted;

static const char sig_pat[] = "\"signature\":\"0x";
#define SIG_PAT_LEN (sizeof sig_pat - 1)

struct conn {
	int client, server;
	int corrupt;   /* this connection's target -> client bytes are corrupted */
	size_t state;  /* bytes of sig_pat matched so far; SIG_PAT_LEN: next byte is the digit */
};

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static char next_hex(char c)
{
	static const char lo[] = "0123456789abcdef0", up[] = "0123456789ABCDEF0";
	const char *p;
	if ((p = strchr(lo, c)) && c)
		return p[1];
	if ((p = strchr(up, c)) && c)
		return p[1];
	return c;
}

static void corrupt(struct conn *c, char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (c->state == SIG_PAT_LEN) {
			char d = next_hex(buf[i]);
			if (d != buf[i]) {
				buf[i] = d;
				long k = atomic_fetch_add(&n_corrupted, 1) + 1;
				fprintf(stderr, "tcp_fault: corrupted %ld\n", k);
			}
			c->state = 0;
			continue;
		}
		if (buf[i] == sig_pat[c->state])
			c->state++;
		else
			c->state = buf[i] == sig_pat[0] ? 1 : 0;
	}
}

/* 1: this connection gets the fault of the mode */
static int decide_fault(void)
{
	if (mode == MODE_PASS)
		return 0;
	if (!claim_file)
		return 1;
	int s = atomic_load(&claim_state);
	if (s == 0) {
		int fd = open(claim_file, O_WRONLY | O_CREAT | O_EXCL, 0600);
		int want = fd >= 0 ? 1 : 2;
		if (fd >= 0) {
			dprintf(fd, "%d\n", (int)getpid());
			close(fd);
			fprintf(stderr, "tcp_fault: claimed %s: %s\n", claim_file,
				mode == MODE_BLACKHOLE ? "swallowing every request" : "corrupting signatures");
		}
		atomic_compare_exchange_strong(&claim_state, &s, want);
		s = atomic_load(&claim_state);
	}
	return s == 1;
}

/* A swallowed connection: read until the client goes, answer nothing. */
static void *hole_main(void *arg)
{
	struct conn *c = arg;
	char buf[4096];
	long k = atomic_fetch_add(&n_corrupted, 1) + 1;
	fprintf(stderr, "tcp_fault: swallowed %ld\n", k);
	while (recv(c->client, buf, sizeof buf, 0) > 0)
		;
	close(c->client);
	free(c);
	return NULL;
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	char buf[16384];
	struct pollfd p[2] = {{c->client, POLLIN, 0}, {c->server, POLLIN, 0}};
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents) {
			ssize_t r = recv(c->client, buf, sizeof buf, 0);
			if (r <= 0) {
				/* half-close towards the target: MOR-RPC consumers may shut down writes */
				if (r == 0) {
					shutdown(c->server, SHUT_WR);
					p[0].fd = -1;
				} else
					break;
			} else if (write_all(c->server, buf, (size_t)r))
				break;
		}
		if (p[1].revents) {
			ssize_t r = recv(c->server, buf, sizeof buf, 0);
			if (r <= 0)
				break;
			if (c->corrupt)
				corrupt(c, buf, (size_t)r);
			if (write_all(c->client, buf, (size_t)r))
				break;
		}
	}
	close(c->client);
	close(c->server);
	free(c);
	return NULL;
}

static int parse_target(const char *s)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return -1;
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &target.sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc != 4 && !(argc == 6 && !strcmp(argv[4], "--claim"))) {
		fprintf(stderr, "usage: tcp_fault PORT TARGET_HOST:PORT pass|corrupt-sig|blackhole [--claim FILE]\n");
		return 2;
	}
	if (parse_target(argv[2])) {
		fprintf(stderr, "tcp_fault: target '%s' is not IPv4:PORT\n", argv[2]);
		return 2;
	}
	if (!strcmp(argv[3], "pass"))
		mode = MODE_PASS;
	else if (!strcmp(argv[3], "corrupt-sig"))
		mode = MODE_CORRUPT_SIG;
	else if (!strcmp(argv[3], "blackhole"))
		mode = MODE_BLACKHOLE;
	else {
		fprintf(stderr, "tcp_fault: unknown mode '%s'\n", argv[3]);
		return 2;
	}
	if (argc == 6)
		claim_file = argv[5];
	signal(SIGPIPE, SIG_IGN);
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = {0};
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 1024)) {
		perror("tcp_fault: bind");
		return 1;
	}
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	fprintf(stderr, "tcp_fault: listening on 127.0.0.1:%s -> %s (%s)\n", argv[1], argv[2], argv[3]);
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			continue;
		int fault = decide_fault();
		if (fault && mode == MODE_BLACKHOLE) {
			struct conn *c = calloc(1, sizeof *c);
			if (!c)
				abort();
			c->client = fd;
			pthread_t t;
			if (pthread_create(&t, &attr, hole_main, c)) {
				close(fd);
				free(c);
			}
			continue;
		}
		int up = socket(AF_INET, SOCK_STREAM, 0);
		if (up < 0 || connect(up, (struct sockaddr *)&target, sizeof target)) {
			/* the target is down: the client sees a reset, as it would without the proxy */
			struct linger lg = {1, 0};
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
			close(fd);
			if (up >= 0)
				close(up);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct conn *c = calloc(1, sizeof *c);
		if (!c)
			abort();
		c->client = fd;
		c->server = up;
		c->corrupt = fault;
		pthread_t t;
		if (pthread_create(&t, &attr, conn_main, c)) {
			close(fd);
			close(up);
			free(c);
		}
	}
}
