/* provider: admin HTTP (healthz, metrics) on libmicrohttpd's internal polling thread. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include <router-core/rc_buf.h>
#include <router-core/rc_common.h>

#include "pv_admin.h"
#include "pv_log.h"
#include "pv_metrics.h"

struct pv_admin {
	struct MHD_Daemon *d;
	unsigned port;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             const char *body, size_t len)
{
	struct MHD_Response *r =
	        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_len, void **req_cls)
{
	if (strcmp(method, "GET"))
		return reply(conn, 405, "text/plain", "method not allowed\n", 19);
	if (!strcmp(url, "/healthz")) {
		if (atomic_load(&pv_metrics.draining))
			return reply(conn, 503, "text/plain", "draining\n", 9);
		return reply(conn, 200, "text/plain", "ok\n", 3);
	}
	if (!strcmp(url, "/metrics")) {
		struct rc_buf b = RC_BUF_INIT;
		enum MHD_Result ret;
		if (pv_metrics_render(&b))
			ret = reply(conn, 500, "text/plain", "out of memory\n", 14);
		else
			ret = reply(conn, 200, "text/plain; version=0.0.4", b.ptr, b.len);
		rc_buf_release(&b);
		return ret;
	}
	return reply(conn, 404, "text/plain", "not found\n", 10);
}

int pv_admin_start(const char *host, unsigned port, struct pv_admin **out)
{
	struct sockaddr_in sa = {0};
	*out = NULL;
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (!host[0])
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		pv_log_error("admin", "admin_listen host '%s' is not an IPv4 address", host);
		return RC_EIO;
	}
	struct pv_admin *a = calloc(1, sizeof *a);
	if (!a)
		return RC_ENOMEM;
	a->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
	                        handle, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
	                        MHD_OPTION_CONNECTION_LIMIT, 64U, MHD_OPTION_CONNECTION_TIMEOUT,
	                        10U, MHD_OPTION_END);
	if (!a->d) {
		pv_log_error("admin", "cannot listen on '%s:%u'", host, port);
		free(a);
		return RC_EIO;
	}
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(a->d, MHD_DAEMON_INFO_BIND_PORT);
	a->port = i ? i->port : port;
	*out = a;
	return RC_OK;
}

unsigned pv_admin_port(const struct pv_admin *a)
{
	return a->port;
}

void pv_admin_stop(struct pv_admin *a)
{
	if (!a)
		return;
	MHD_stop_daemon(a->d);
	free(a);
}
