/* bench/ceiling: the bare ceiling for bench/http.sh — libmicrohttpd + GnuTLS
 * built and configured as slhookd's listener (epoll, a thread per CPU, the
 * same TLS priorities, session tickets), that reads each body and answers 200 with nothing
 * else to do. Every slhookd figure is also given as a ratio to this one,
 * measured in the same run.
 *
 *   ceiling CERT KEY PORT        serve on 127.0.0.1:PORT until SIGTERM/SIGINT */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "cfg.h"
#include "tls.h"
#include "util.h"

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
           const char *data, size_t *size, void **con_cls)
{
        static char empty[] = "";
        struct MHD_Response *r;
        enum MHD_Result ret;

        if (*con_cls == NULL) {
                *con_cls = (void *) 1;
                return MHD_YES;
        }
        if (*size) {
                *size = 0;              /* read, and thrown away */
                return MHD_YES;
        }
        r = MHD_create_response_from_buffer(0, empty, MHD_RESPMEM_PERSISTENT);
        ret = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
}

static void
on_connection(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode code)
{
        const union MHD_ConnectionInfo *ci;

        (void) cls;
        (void) socket_context;
        if (code == MHD_CONNECTION_NOTIFY_STARTED &&
            (ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION)) != NULL)
                tls_enable_tickets(ci->tls_session);
}

int
main(int argc, char **argv)
{
        struct sockaddr_in sa = { .sin_family = AF_INET };
        struct MHD_Daemon *d;
        char *cert, *key;
        size_t len;
        sigset_t sigs;
        int sig;
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

        if (argc != 4 || file_read(argv[1], 1 << 20, &cert, &len) < 0 || file_read(argv[2], 1 << 20, &key, &len) < 0) {
                fprintf(stderr, "usage: ceiling CERT KEY PORT\n");
                return 2;
        }
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t) atoi(argv[3]));
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
        d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TLS | MHD_USE_ITC, 0, NULL, NULL, on_request, NULL,
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
                             MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) (ncpu > 0 ? ncpu : 1),
                             MHD_OPTION_CONNECTION_LIMIT, 4096U,
                             MHD_OPTION_CONNECTION_TIMEOUT, 30U,
                             MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
                             MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_HTTPS_MEM_KEY, key,
                             MHD_OPTION_HTTPS_PRIORITIES, CFG_DEFAULT_PRIORITIES,
                             MHD_OPTION_END);
        if (d == NULL) {
                fprintf(stderr, "ceiling: cannot listen on 127.0.0.1:%s\n", argv[3]);
                return 1;
        }
        sigwait(&sigs, &sig);
        MHD_stop_daemon(d);
        freezero(key, strlen(key));
        free(cert);
        return 0;
}
