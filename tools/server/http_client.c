/*
 * http_client.c - the smallest HTTP/1.1 client that serves the load client
 * and the tests: one keep-alive connection, Content-Length bodies only
 * (which is all `facepay serve` sends), bounded reads, a timeout on every
 * socket operation. Plain POSIX sockets, so facepay-load needs no libcurl.
 */
#include "server_internal.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_HEAD (16 * 1024)
#define MAX_RESP_BODY (16 * 1024 * 1024)

struct srv_http_conn {
    char host[256];
    int port, timeout_s, fd;
    char buf[MAX_HEAD + 1];   /* + 1: room for the NUL after what was read */
    size_t have;        /* bytes in buf not consumed yet */
};

static int open_socket(srv_http_conn *c, char *err, size_t err_len)
{
    char port[16];
    snprintf(port, sizeof port, "%d", c->port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(c->host, port, &hints, &res);
    if (rc) {
        snprintf(err, err_len, "%s: %s", c->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {c->timeout_s, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, a->ai_addr, a->ai_addrlen)) {
            snprintf(err, err_len, "connect %s:%d: %s", c->host, c->port, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    c->fd = fd;
    c->have = 0;
    return 0;
}

srv_http_conn *srv_http_connect(const char *host, int port, int timeout_s, char *err,
                                size_t err_len)
{
    srv_http_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    snprintf(c->host, sizeof c->host, "%s", host);
    c->port = port;
    c->timeout_s = timeout_s > 0 ? timeout_s : 30;
    c->fd = -1;
    if (open_socket(c, err, err_len)) {
        free(c);
        return NULL;
    }
    return c;
}

void srv_http_close(srv_http_conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads more into c->buf; -1 on error or EOF. */
static int fill(srv_http_conn *c)
{
    if (c->have >= MAX_HEAD)
        return -1;
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->have, MAX_HEAD - c->have, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c->have += (size_t)r;
        return 0;
    }
}

static void header_value(const char *head, const char *name, char *out, size_t out_len)
{
    out[0] = 0;
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (!strncasecmp(line, name, n) && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            size_t l = strcspn(v, "\r\n");
            if (l >= out_len)
                l = out_len - 1;
            memcpy(out, v, l);
            out[l] = 0;
            return;
        }
    }
}

static int read_response(srv_http_conn *c, int head_only, srv_http_response *resp,
                         int *server_closes, char *err, size_t err_len)
{
    char *end;
    for (;;) {
        /* Terminated after the last byte read, never over it: the buffer
         * may also hold the start of the body. */
        c->buf[c->have] = 0;
        end = c->have ? strstr(c->buf, "\r\n\r\n") : NULL;
        if (end)
            break;
        if (fill(c)) {
            snprintf(err, err_len, "connection closed or timed out before the response headers");
            return -1;
        }
    }
    *end = 0;
    size_t head_len = (size_t)(end - c->buf) + 4;
    int major, minor;
    if (sscanf(c->buf, "HTTP/%d.%d %d", &major, &minor, &resp->status) != 3) {
        snprintf(err, err_len, "not an HTTP response");
        return -1;
    }
    char cl[32], conn[32];
    header_value(c->buf, "Content-Length", cl, sizeof cl);
    header_value(c->buf, "Connection", conn, sizeof conn);
    header_value(c->buf, "Retry-After", resp->retry_after, sizeof resp->retry_after);
    header_value(c->buf, "Content-Type", resp->content_type, sizeof resp->content_type);
    *server_closes = !strcasecmp(conn, "close");
    long long len = cl[0] ? atoll(cl) : -1;
    if (head_only)
        len = 0;
    if (len < 0 || len > MAX_RESP_BODY) {
        snprintf(err, err_len, "response without a usable Content-Length");
        return -1;
    }
    resp->body = malloc((size_t)len + 1);
    if (!resp->body) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    size_t got = c->have - head_len < (size_t)len ? c->have - head_len : (size_t)len;
    memcpy(resp->body, c->buf + head_len, got);
    /* Keep what follows (nothing, for a client that waits for answers). */
    memmove(c->buf, c->buf + head_len + got, c->have - head_len - got);
    c->have -= head_len + got;
    while (got < (size_t)len) {
        ssize_t r = recv(c->fd, resp->body + got, (size_t)len - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(err, err_len, "connection closed in the response body");
            free(resp->body);
            resp->body = NULL;
            return -1;
        }
        got += (size_t)r;
    }
    resp->body[len] = 0;
    resp->body_len = (size_t)len;
    return 0;
}

int srv_http_request(srv_http_conn *c, const char *method, const char *path,
                     const char *extra_headers, const char *content_type, const void *body,
                     size_t body_len, srv_http_response *resp, char *err, size_t err_len)
{
    memset(resp, 0, sizeof *resp);
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s%s%s%s",
                     method, path, c->host, c->port, extra_headers ? extra_headers : "",
                     content_type ? "Content-Type: " : "", content_type ? content_type : "",
                     content_type ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head - 64) {
        snprintf(err, err_len, "request headers too long");
        return -1;
    }
    if (body || !strcmp(method, "POST") || !strcmp(method, "PUT"))
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    /* A keep-alive connection the server closed in the meantime fails on
     * the first send or read: reconnect once and resend. */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (c->fd < 0 && open_socket(c, err, err_len))
            return -1;
        int closes = 0;
        int sent = !send_all(c->fd, head, (size_t)n);
        /* The server may answer (413) and close before reading the whole
         * body: a failed body send still reads the answer. */
        if (sent && body_len)
            (void)send_all(c->fd, body, body_len);
        if (sent && !read_response(c, !strcmp(method, "HEAD"), resp, &closes, err, err_len)) {
            if (closes) {
                close(c->fd);
                c->fd = -1;
            }
            return 0;
        }
        close(c->fd);
        c->fd = -1;
        if (resp->status)  /* got a broken answer: do not resend */
            return -1;
    }
    if (!err[0])
        snprintf(err, err_len, "request failed");
    return -1;
}

void srv_http_response_free(srv_http_response *r)
{
    free(r->body);
    r->body = NULL;
}
