/*
 * mock_openai PORT: a test backend that speaks enough of the OpenAI HTTP API for the gateway's
 * integration tests and benchmarks. One thread per connection, HTTP/1.1 keep-alive, chunked
 * streams. The behaviour is chosen by the model name, which every gateway passes through:
 *
 *   mock-chat       JSON answer, or (stream) 5 SSE chunks 10 ms apart with usage and [DONE]
 *   mock-nousage    stream without a usage chunk (the gateway must estimate)
 *   mock-instant    tiny answer at once (benchmarks); stream: 3 events at once
 *   mock-slow       stream: headers at once, then 2.5 s of silence, then one chunk and [DONE]
 *   mock-drip       stream: 10 chunks 200 ms apart
 *   mock-hold       stream: one chunk at once, then one a second for 20 s (benchmarks hold many)
 *   mock-long       stream: 5 chunks 1 s apart (outlasts a short client timeout)
 *   mock-fail       stream: 2 chunks, then the connection is cut (no [DONE])
 *   mock-hang       never answers (until the client goes away)
 *   mock-echo       answers with the request body, byte for byte
 *   mock-bytes      stream of awkward bytes (CRLF, comments, UTF-8, events split across writes)
 *   mock-flood      stream: one event, 300 ms of silence, then 8 MB of numbered 1 KiB events as
 *                   fast as the socket takes them (a slow client makes the gateway's writes back up)
 *   mock-status-N   answers status N with an OpenAI-shaped error body
 *
 * GET /stats answers {"requests":N,"cancelled":N,"open":N}: "cancelled" counts requests whose
 * client (the gateway) went away before the answer was complete. GET /bytes answers the exact
 * body mock-bytes streams, for byte-exactness checks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static atomic_long n_requests, n_cancelled, n_open;

static const char *const bytes_parts[] = {
	": hello from the mock\r\n\r\n",
	"data: {\"choices\":[{\"delta\":{\"content\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}}]}\r\n\r\n",
	"data: {\"choices\":[{\"delta\":{\"con",
	"tent\":\"split\"}}]}\n",
	"\n",
	"event: message\nid: 7\ndata: {\"choices\":[{\"delta\":{\"content\":\"multi\"}}]}\ndata: {\"x\":1}\n\n",
	"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3,\"total_tokens\":14}}\n\n",
	"data: [DONE]\n\n",
};
#define N_BYTES_PARTS (sizeof bytes_parts / sizeof bytes_parts[0])

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

/* Wait ms; returns -1 when the peer closed meanwhile. */
static int wait_or_gone(int fd, int ms)
{
	struct pollfd p = {fd, POLLRDHUP, 0};
	int r = poll(&p, 1, ms);
	if (r > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
		return -1;
	return 0;
}

static int send_head(int fd, int status, const char *ctype, long len)
{
	char h[256];
	int n;
	if (len >= 0)
		n = snprintf(h, sizeof h, "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %ld\r\n\r\n", status,
			     ctype, len);
	else
		n = snprintf(h, sizeof h, "HTTP/1.1 %d X\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n",
			     status, ctype);
	return write_all(fd, h, (size_t)n);
}

static int send_chunk(int fd, const char *p, size_t n)
{
	char h[32];
	int k = snprintf(h, sizeof h, "%zx\r\n", n);
	if (write_all(fd, h, (size_t)k) || write_all(fd, p, n) || write_all(fd, "\r\n", 2))
		return -1;
	return 0;
}

static int send_body(int fd, int status, const char *ctype, const char *body)
{
	size_t n = strlen(body);
	if (send_head(fd, status, ctype, (long)n))
		return -1;
	return write_all(fd, body, n);
}

static int chat_chunk(int fd, const char *text)
{
	char ev[512];
	int n = snprintf(ev, sizeof ev,
			 "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1,"
			 "\"model\":\"mock\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"},\"finish_reason\":null}]}\n\n",
			 text);
	return send_chunk(fd, ev, (size_t)n);
}

static const char usage_ev[] =
	"data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"mock\","
	"\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":5,\"total_tokens\":12}}\n\n";

/* Returns 0 to keep the connection, -1 to close it. */
static int handle(int fd, const char *method, const char *path, const char *body, size_t blen)
{
	char model[64] = "";
	const char *m = strstr(body, "\"model\"");
	if (m && (m = strchr(m + 7, '"'))) {
		size_t i = 0;
		m++;
		while (*m && *m != '"' && i + 1 < sizeof model)
			model[i++] = *m++;
		model[i] = '\0';
	}
	int stream = strstr(body, "\"stream\":true") || strstr(body, "\"stream\": true");
	if (!strcmp(method, "GET") && !strcmp(path, "/stats")) {
		char b[160];
		snprintf(b, sizeof b, "{\"requests\":%ld,\"cancelled\":%ld,\"open\":%ld}", atomic_load(&n_requests),
			 atomic_load(&n_cancelled), atomic_load(&n_open));
		return send_body(fd, 200, "application/json", b);
	}
	if (!strcmp(method, "GET") && !strcmp(path, "/bytes")) {
		char b[2048] = "";
		for (size_t i = 0; i < N_BYTES_PARTS; i++)
			strcat(b, bytes_parts[i]);
		return send_body(fd, 200, "text/event-stream", b);
	}
	atomic_fetch_add(&n_requests, 1);
	if (!strncmp(model, "mock-status-", 12)) {
		int st = atoi(model + 12);
		if (st < 200 || st > 599)
			st = 500;
		return send_body(fd, st, "application/json",
				 "{\"error\":{\"message\":\"mock failure\",\"type\":\"mock_error\",\"param\":null,\"code\":null}}");
	}
	if (!strcmp(model, "mock-echo")) {
		if (send_head(fd, 200, "application/json", (long)blen))
			return -1;
		return write_all(fd, body, blen);
	}
	if (!strcmp(model, "mock-hang")) {
		atomic_fetch_add(&n_open, 1);
		while (wait_or_gone(fd, 1000) == 0)
			;
		atomic_fetch_sub(&n_open, 1);
		atomic_fetch_add(&n_cancelled, 1);
		return -1;
	}
	if (!stream) {
		if (!strcmp(model, "mock-instant"))
			return send_body(fd, 200, "application/json",
					 "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":"
					 "{\"role\":\"assistant\",\"content\":\"ok\"},\"finish_reason\":\"stop\"}],"
					 "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}");
		return send_body(fd, 200, "application/json",
				 "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"mock\","
				 "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hello from the mock\"},"
				 "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":4,\"total_tokens\":11}}");
	}
	if (send_head(fd, 200, "text/event-stream", -1))
		return -1;
	int rc = 0;
	atomic_fetch_add(&n_open, 1);
	if (!strcmp(model, "mock-instant")) {
		rc = chat_chunk(fd, "a") || chat_chunk(fd, "b") || send_chunk(fd, usage_ev, sizeof usage_ev - 1) ||
		     send_chunk(fd, "data: [DONE]\n\n", 14);
	} else if (!strcmp(model, "mock-bytes")) {
		for (size_t i = 0; i < N_BYTES_PARTS && !rc; i++) {
			rc = send_chunk(fd, bytes_parts[i], strlen(bytes_parts[i]));
			if (!rc && wait_or_gone(fd, 30))
				rc = -1;
		}
	} else if (!strcmp(model, "mock-flood")) {
		char ev[1100];
		for (int i = 0; i < 8000 && !rc; i++) {
			int n = snprintf(ev, sizeof ev, "data: {\"i\":%d,\"pad\":\"%0*d\"}\n\n", i, 1000, i);
			rc = send_chunk(fd, ev, (size_t)n);
			if (!rc && i == 0) /* a pause first: the gateway has sent all it had, then the flood */
				rc = wait_or_gone(fd, 300);
		}
		if (!rc)
			rc = send_chunk(fd, "data: [DONE]\n\n", 14);
	} else if (!strcmp(model, "mock-slow")) {
		rc = wait_or_gone(fd, 2500) || chat_chunk(fd, "late") || send_chunk(fd, "data: [DONE]\n\n", 14);
	} else if (!strcmp(model, "mock-fail")) {
		rc = chat_chunk(fd, "one") || chat_chunk(fd, "two");
		atomic_fetch_sub(&n_open, 1);
		return -1; /* cut: no terminating chunk */
	} else {
		int drip = !strcmp(model, "mock-drip"), hold = !strcmp(model, "mock-hold");
		int lng = !strcmp(model, "mock-long");
		int n = drip ? 10 : hold ? 20 : 5, ms = drip ? 200 : hold || lng ? 1000 : 10;
		for (int i = 0; i < n && !rc; i++) {
			char w[16];
			snprintf(w, sizeof w, "w%d ", i);
			rc = chat_chunk(fd, w) || wait_or_gone(fd, ms);
		}
		if (!rc && strcmp(model, "mock-nousage"))
			rc = send_chunk(fd, usage_ev, sizeof usage_ev - 1);
		if (!rc)
			rc = send_chunk(fd, "data: [DONE]\n\n", 14);
	}
	atomic_fetch_sub(&n_open, 1);
	if (rc) {
		atomic_fetch_add(&n_cancelled, 1);
		return -1;
	}
	return send_chunk(fd, "", 0) ? -1 : 0;
}

static void *conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		char *eoh;
		buf[len] = '\0';
		while (!(eoh = strstr(buf, "\r\n\r\n"))) {
			if (len == cap)
				goto out;
			ssize_t r = recv(fd, buf + len, cap - len, 0);
			if (r <= 0)
				goto out;
			len += (size_t)r;
			buf[len] = '\0';
		}
		char method[8] = "", path[256] = "";
		sscanf(buf, "%7s %255s", method, path);
		long clen = 0;
		for (char *h = strstr(buf, "\r\n"); h && h < eoh; h = strstr(h + 2, "\r\n"))
			if (!strncasecmp(h + 2, "Content-Length:", 15))
				clen = atol(h + 17);
		size_t hlen = (size_t)(eoh + 4 - buf);
		if (clen < 0 || (size_t)clen > cap - hlen) {
			if (clen < 0 || hlen + (size_t)clen > (64u << 20))
				goto out;
			char *nb = realloc(buf, hlen + (size_t)clen + 1);
			if (!nb)
				goto out;
			buf = nb;
			cap = hlen + (size_t)clen;
		}
		while (len < hlen + (size_t)clen) {
			ssize_t r = recv(fd, buf + len, hlen + (size_t)clen - len, 0);
			if (r <= 0)
				goto out;
			len += (size_t)r;
		}
		char save = buf[hlen + clen];
		buf[hlen + clen] = '\0';
		int rc = handle(fd, method, path, buf + hlen, (size_t)clen);
		buf[hlen + clen] = save;
		if (rc)
			goto out;
		memmove(buf, buf + hlen + clen, len - hlen - (size_t)clen);
		len -= hlen + (size_t)clen;
	}
out:
	free(buf);
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mock_openai PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = {0};
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 4096)) {
		perror("mock_openai: bind");
		return 1;
	}
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	fprintf(stderr, "mock_openai: listening on 127.0.0.1:%s\n", argv[1]);
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		pthread_t t;
		if (pthread_create(&t, &attr, conn_main, (void *)(intptr_t)fd))
			close(fd);
	}
}
