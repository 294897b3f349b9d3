/*
 * pv_mock_anthropic PORT: a test backend speaking enough of Anthropic's Messages API
 * (POST /v1/messages) for the provider's claudeai adapter. One thread per connection,
 * Connection: close. It checks x-api-key == "test-anthropic-key" and anthropic-version, else 401
 * with an Anthropic error body. Behaviour by the request's "model":
 *
 *   claude-mock    answers the text "sys=<system>|max=<max_tokens>|stop=<first stop sequence>|
 *                  n=<message count>" then "Hello" and " world"; streamed as SSE events
 *                  (message_start, content_block_start, ping, 3 deltas, content_block_stop,
 *                  message_delta with stop_reason, message_stop) or as one JSON message
 *   claude-error   stream: message_start, one delta, then an "error" event (overloaded_error)
 *   claude-529     status 529 with an overloaded_error body
 *   claude-flood   stream of 200 one-word deltas with no pause (throughput measurements)
 * Usage: input_tokens 17, output_tokens 5.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

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

static void respond(int fd, int status, const char *type, const char *body)
{
	char h[256];
	int n = snprintf(h, sizeof h,
	                 "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                 "Connection: close\r\n\r\n",
	                 status, type, strlen(body));
	write_all(fd, h, (size_t)n);
	write_all(fd, body, strlen(body));
}

static void event(int fd, const char *name, json_t *data)
{
	char *s = json_dumps(data, JSON_COMPACT);
	char h[64];
	int n = snprintf(h, sizeof h, "event: %s\ndata: ", name);
	write_all(fd, h, (size_t)n);
	write_all(fd, s, strlen(s));
	write_all(fd, "\n\n", 2);
	free(s);
	json_decref(data);
}

static void handle(int fd, const char *hdrs, const char *body, size_t blen)
{
	if (!strcasestr(hdrs, "\nx-api-key: test-anthropic-key\r") ||
	    !strcasestr(hdrs, "\nanthropic-version: 2023-06-01\r")) {
		respond(fd, 401, "application/json",
		        "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
		        "\"message\":\"invalid x-api-key\"}}");
		return;
	}
	json_t *req = json_loadb(body, blen, 0, NULL);
	const char *model = json_string_value(json_object_get(req, "model"));
	if (!model) {
		respond(fd, 400, "application/json",
		        "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
		        "\"message\":\"model: field required\"}}");
		json_decref(req);
		return;
	}
	if (!strcmp(model, "claude-529")) {
		respond(fd, 529, "application/json",
		        "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
		        "\"message\":\"Overloaded\"}}");
		json_decref(req);
		return;
	}
	const char *sys = json_string_value(json_object_get(req, "system"));
	const char *stop =
	        json_string_value(json_array_get(json_object_get(req, "stop_sequences"), 0));
	char info[1024];
	snprintf(info, sizeof info, "sys=%s|max=%lld|stop=%s|n=%zu|", sys ? sys : "",
	         (long long)json_integer_value(json_object_get(req, "max_tokens")),
	         stop ? stop : "", json_array_size(json_object_get(req, "messages")));
	const char *reason = stop ? "stop_sequence" : "end_turn";
	if (!json_is_true(json_object_get(req, "stream"))) {
		json_t *r = json_pack("{s:s,s:s,s:s,s:[{s:s,s:s},{s:s,s:s}],s:s,s:s,s:{s:i,s:i}}",
		                      "id", "msg_mock1", "type", "message", "role", "assistant",
		                      "content", "type", "text", "text", info, "type", "text",
		                      "text", "Hello world", "model", model, "stop_reason", reason,
		                      "usage", "input_tokens", 17, "output_tokens", 5);
		char *s = json_dumps(r, JSON_COMPACT);
		respond(fd, 200, "application/json", s);
		free(s);
		json_decref(r);
		json_decref(req);
		return;
	}
	const char *h =
	        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
	write_all(fd, h, strlen(h));
	event(fd, "message_start",
	      json_pack("{s:s,s:{s:s,s:s,s:s,s:[],s:s,s:n,s:{s:i,s:i}}}", "type", "message_start",
	                "message", "id", "msg_mock1", "type", "message", "role", "assistant",
	                "content", "model", model, "stop_reason", "usage", "input_tokens", 17,
	                "output_tokens", 1));
	event(fd, "content_block_start",
	      json_pack("{s:s,s:i,s:{s:s,s:s}}", "type", "content_block_start", "index", 0,
	                "content_block", "type", "text", "text", ""));
	event(fd, "ping", json_pack("{s:s}", "type", "ping"));
	const char *parts[] = {info, "Hello", " world"};
	int flood = !strcmp(model, "claude-flood");
	int nparts = !strcmp(model, "claude-error") ? 1 : flood ? 200 : 3;
	for (int i = 0; i < nparts; i++) {
		event(fd, "content_block_delta",
		      json_pack("{s:s,s:i,s:{s:s,s:s}}", "type", "content_block_delta", "index", 0,
		                "delta", "type", "text_delta", "text", flood ? "word " : parts[i]));
		if (!flood)
			usleep(5000);
	}
	if (!strcmp(model, "claude-error")) {
		event(fd, "error",
		      json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type",
		                "overloaded_error", "message", "Overloaded"));
		json_decref(req);
		return;
	}
	event(fd, "content_block_stop",
	      json_pack("{s:s,s:i}", "type", "content_block_stop", "index", 0));
	event(fd, "message_delta",
	      json_pack("{s:s,s:{s:s,s:n},s:{s:i}}", "type", "message_delta", "delta",
	                "stop_reason", reason, "stop_sequence", "usage", "output_tokens", 5));
	event(fd, "message_stop", json_pack("{s:s}", "type", "message_stop"));
	json_decref(req);
}

static void *conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		ssize_t n = recv(fd, buf + len, cap - len, 0);
		if (n <= 0)
			goto out;
		len += (size_t)n;
		buf[len] = '\0';
		char *end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		size_t hlen = (size_t)(end - buf) + 4;
		const char *cl = strcasestr(buf, "\ncontent-length:");
		size_t clen = cl ? strtoul(cl + 16, NULL, 10) : 0;
		if (clen > cap - hlen)
			goto out;
		while (len < hlen + clen) {
			n = recv(fd, buf + len, cap - len, 0);
			if (n <= 0)
				goto out;
			len += (size_t)n;
		}
		buf[hlen - 2] = '\0';
		handle(fd, buf, buf + hlen, clen);
		break;
	}
out:
	free(buf);
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: pv_mock_anthropic PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = {0};
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)atoi(argv[1]));
	if (bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 512)) {
		perror("pv_mock_anthropic: bind");
		return 1;
	}
	fprintf(stderr, "pv_mock_anthropic: listening on 127.0.0.1:%s\n", argv[1]);
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			continue;
		pthread_t t;
		if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd))
			close(fd);
		else
			pthread_detach(t);
	}
}
