/*
 * provider: the local admin listener (libmicrohttpd, internal thread): GET /healthz answers
 * "ok" (503 "draining" once SIGTERM arrived) and GET /metrics the Prometheus text of
 * pv_metrics. Bind it to loopback: it has no authentication.
 */
#ifndef PV_ADMIN_H
#define PV_ADMIN_H

struct pv_admin;

/* Start on host:port (port 0: any free port). RC_OK or RC_EIO (logged). */
int pv_admin_start(const char *host, unsigned port, struct pv_admin **out);
/* The bound port. */
unsigned pv_admin_port(const struct pv_admin *a);
/* Stop and free. NULL is a no-op. */
void pv_admin_stop(struct pv_admin *a);

#endif
