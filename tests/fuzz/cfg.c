/* Fuzz target: cfg_load() on any file (secrets not read, as slhookctl loads
 * it). Invariants: an error is one line naming the file; an accepted file
 * gives a configuration that keeps every rule validate() states. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cfg.h"
#include "fuzz.h"

static void
check_cfg(const struct cfg *c, const char *path)
{
        size_t i, j;

        FUZZ_ASSERT(c->n_endpoints >= 1);
        for (i = 0; i < c->n_endpoints; i++) {
                const struct cfg_endpoint *ep = &c->endpoints[i];

                FUZZ_ASSERT(ep->name && ep->name[0] && ep->path && ep->path[0] == '/');
                FUZZ_ASSERT(cfg_endpoint_by_path(c, ep->path) == ep);
                for (j = 0; j < i; j++)
                        FUZZ_ASSERT(strcmp(c->endpoints[j].name, ep->name) != 0);
        }
        FUZZ_ASSERT(acl_count(c->allow) >= 1);
        FUZZ_ASSERT((c->tls_cert == NULL) == (c->tls_key == NULL));
        FUZZ_ASSERT(c->listen_host && c->listen_port <= 65535);
        FUZZ_ASSERT(c->threads >= 1 && c->threads <= 4096);
        FUZZ_ASSERT(c->max_body >= 64 && c->max_body <= 64 * 1024 * 1024);
        FUZZ_ASSERT(c->max_connections >= 1 && c->max_connections_per_ip <= 1000000);
        FUZZ_ASSERT(c->queue_size >= 1 && c->timeout >= 1 && c->database && c->tls_priorities);
        if (c->api) {
                FUZZ_ASSERT(c->api_key_file && c->api_endpoint && c->api_public_url);
                for (i = 0; i < c->n_endpoints; i++)
                        if (strcmp(c->endpoints[i].name, c->api_endpoint) == 0)
                                break;
                FUZZ_ASSERT(i < c->n_endpoints);
        }
        for (i = 0; i < c->n_warnings; i++)
                FUZZ_ASSERT(strncmp(c->warnings[i], path, strlen(path)) == 0);
}

int
fuzz_cfg(const uint8_t *data, size_t size)
{
        static int fd = -1;
        static char path[64];
        struct cfg *c = NULL;
        char *err = NULL;
        int r;

        if (fd < 0) {
                fd = memfd_create("slhookd.conf", MFD_CLOEXEC);
                FUZZ_ASSERT(fd >= 0);
                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        }
        FUZZ_ASSERT(ftruncate(fd, 0) == 0);
        FUZZ_ASSERT(size == 0 || pwrite(fd, data, size, 0) == (ssize_t) size);

        r = cfg_load(path, CFG_NO_SECRETS, &c, &err);
        if (r < 0) {
                FUZZ_ASSERT(c == NULL && err != NULL);
                FUZZ_ASSERT(strncmp(err, path, strlen(path)) == 0 && strchr(err, '\n') == NULL);
                free(err);
                return 0;
        }
        FUZZ_ASSERT(r == 0 && err == NULL && c != NULL);
        check_cfg(c, path);
        cfg_free(c);
        return 0;
}

#ifdef FUZZ_ENTRY
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        return fuzz_cfg(data, size);
}
#endif
