/* Scratch directories for tests; see testutil.h. */
#include "testutil.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include <jansson.h>

#include <router-core/rc_rpc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *tmp_root(void)
{
	const char *t = getenv("TMPDIR");
	return t && *t ? t : "/tmp";
}

void tu_mkdtemp(char *buf, size_t cap, const char *tag)
{
	snprintf(buf, cap, "%s/morgate-%s-XXXXXX", tmp_root(), tag);
	if (!mkdtemp(buf)) {
		perror("mkdtemp");
		abort();
	}
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(p);
}

void tu_rmrf(const char *path)
{
	if (strncmp(path, tmp_root(), strlen(tmp_root())) != 0 || !strstr(path, "/morgate-"))
		return;
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tu_path(char *buf, size_t cap, const char *dir, const char *name)
{
	snprintf(buf, cap, "%s/%s", dir, name);
	return buf;
}

int tu_free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	int port = -1;
	if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(s, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	if (s >= 0)
		close(s);
	return port;
}

int64_t tu_ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

pid_t tu_anvil_start(char *url, size_t cap)
{
	const char *root = getenv("MORGATE_ROOT");
	char bin[512], ports[16];
	snprintf(bin, sizeof bin, "%s/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
		 root ? root : ".");
	int port = tu_free_port();
	if (port <= 0)
		return -1;
	snprintf(ports, sizeof ports, "%d", port);
	snprintf(url, cap, "http://127.0.0.1:%d", port);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(bin, "anvil", "--host", "127.0.0.1", "--port", ports, "--silent", (char *)NULL);
		_exit(127);
	}
	const char *urls[] = {url};
	struct rc_rpc *c = NULL;
	struct rc_rpc_options o = {urls, 1, 200, 500, 1, 0};
	uint64_t id = 0;
	if (rc_rpc_new(&o, &c) == RC_OK) {
		int64_t deadline = tu_ms_now() + 15000;
		while (tu_ms_now() < deadline && rc_rpc_chain_id(c, &id, NULL) != RC_OK)
			usleep(50000);
		rc_rpc_free(c);
	}
	if (id != 31337) {
		tu_anvil_stop(pid);
		return -1;
	}
	return pid;
}

void tu_anvil_stop(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
}

static const char *root_dir(void)
{
	const char *root = getenv("MORGATE_ROOT");
	return root && *root ? root : ".";
}

json_t *tu_devnet_start(const char *dir)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "'%s/scripts/devnet' start --state-dir '%s/devnet'", root_dir(),
		 dir);
	FILE *p = popen(cmd, "r");
	if (!p)
		return NULL;
	json_t *j = json_loadf(p, JSON_DISABLE_EOF_CHECK, NULL);
	pclose(p);
	return j;
}

int tu_devnet_stop(const char *dir)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "'%s/scripts/devnet' stop '%s/devnet' >/dev/null; rm -rf '%s'",
		 root_dir(), dir, dir);
	return system(cmd) == 0 ? 0 : -1;
}
