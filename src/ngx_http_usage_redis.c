
/*
 * A connection to Redis on nginx's event loop (see the header).  The
 * order of things: resolve (nginx's resolver, again on every reconnect,
 * since a managed Redis fails over by moving its name), connect, TLS,
 * AUTH and CLIENT SETNAME pipelined, then "ready"; any surprise (a
 * protocol error, a reply nobody asked for, a timeout, a reply too
 * large) closes the connection, fails what is in flight and reconnects
 * after a delay that doubles up to backoff_max.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_usage_redis.h"


static void ngx_http_usage_redis_resolve(ngx_http_usage_redis_t *rd);
static void ngx_http_usage_redis_resolved(ngx_resolver_ctx_t *ctx);
static void ngx_http_usage_redis_set_addr(ngx_http_usage_redis_t *rd,
    struct sockaddr *sa, socklen_t len);
static void ngx_http_usage_redis_connect(ngx_http_usage_redis_t *rd);
static ngx_int_t ngx_http_usage_redis_test_connect(ngx_connection_t *c);
static void ngx_http_usage_redis_write_handler(ngx_event_t *wev);
static void ngx_http_usage_redis_connected(ngx_http_usage_redis_t *rd);
#if (NGX_SSL)
static void ngx_http_usage_redis_ssl_init(ngx_http_usage_redis_t *rd,
    ngx_connection_t *c);
static void ngx_http_usage_redis_ssl_handshaked(ngx_connection_t *c);
#endif
static void ngx_http_usage_redis_auth_done(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static void ngx_http_usage_redis_setname_done(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static ngx_int_t ngx_http_usage_redis_queue(ngx_http_usage_redis_t *rd,
    int argc, const char **argv, const size_t *argvlen,
    ngx_http_usage_redis_reply_pt handler, void *data);
static ngx_int_t ngx_http_usage_redis_room(ngx_http_usage_redis_t *rd,
    size_t len);
static ngx_int_t ngx_http_usage_redis_flush(ngx_http_usage_redis_t *rd);
static void ngx_http_usage_redis_read_handler(ngx_event_t *rev);
static ngx_int_t ngx_http_usage_redis_replies(ngx_http_usage_redis_t *rd);
static void ngx_http_usage_redis_dispatch(ngx_http_usage_redis_t *rd,
    redisReply *reply);
static void ngx_http_usage_redis_close(ngx_http_usage_redis_t *rd);
static void ngx_http_usage_redis_retry_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_usage_redis_reader(ngx_http_usage_redis_t *rd);
static void *ngx_http_usage_redis_create_array(const redisReadTask *task,
    int elements);


/* known to be down: an attempt to reconnect that fails logs at info */
#define ngx_http_usage_redis_level(rd)                                       \
    ((ngx_uint_t) (((rd)->quiet || (rd)->second) ? NGX_LOG_INFO             \
                                                 : NGX_LOG_ERR))

/* refused credentials: said once, by the first connection */
#define ngx_http_usage_redis_auth_level(rd)                                  \
    ((ngx_uint_t) ((rd)->second ? NGX_LOG_INFO : NGX_LOG_ERR))


/* hiredis's own array constructor, which the capped one calls */
static void *(*ngx_http_usage_redis_array)(const redisReadTask *task,
    int elements);


void
ngx_http_usage_redis_init(ngx_http_usage_redis_t *rd,
    ngx_http_usage_redis_conf_t *conf, ngx_log_t *log)
{
    ngx_memzero(rd, sizeof(ngx_http_usage_redis_t));

    rd->conf = conf;
    rd->log = log;
    rd->stopped = 1;

    ngx_str_set(&rd->name, "(unresolved)");

    rd->retry.handler = ngx_http_usage_redis_retry_handler;
    rd->retry.data = rd;
    rd->retry.log = log;

    /* a reconnect never keeps an exiting worker alive */
    rd->retry.cancelable = 1;
}


void
ngx_http_usage_redis_start(ngx_http_usage_redis_t *rd)
{
    rd->stopped = 0;

    if (rd->state != NGX_HTTP_USAGE_REDIS_IDLE || rd->retry.timer_set) {
        return;
    }

    if (rd->conf->resolver) {
        ngx_http_usage_redis_resolve(rd);
        return;
    }

    /* a literal, or the addresses found at configuration: in turn */
    rd->next_addr = (rd->next_addr + 1) % rd->conf->naddrs;

    ngx_http_usage_redis_set_addr(rd, rd->conf->addrs[rd->next_addr].sockaddr,
                                  rd->conf->addrs[rd->next_addr].socklen);

    ngx_http_usage_redis_connect(rd);
}


/* closes the connection for good: no reconnect until started again */

void
ngx_http_usage_redis_stop(ngx_http_usage_redis_t *rd)
{
    rd->stopped = 1;

    if (rd->retry.timer_set) {
        ngx_del_timer(&rd->retry);
    }

    if (rd->state != NGX_HTTP_USAGE_REDIS_IDLE) {
        ngx_http_usage_redis_fail(rd, NULL);
    }

    /* the output buffer outlives reconnects, not a stop (the worker's
     * exit, a handover): nothing is left to send */
    if (rd->out) {
        ngx_free(rd->out);
        rd->out = NULL;
        rd->out_size = 0;
        rd->out_len = 0;
        rd->out_pos = 0;
    }
}


static void
ngx_http_usage_redis_resolve(ngx_http_usage_redis_t *rd)
{
    ngx_resolver_ctx_t  *ctx;

    ctx = ngx_resolve_start(rd->conf->resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_http_usage_redis_fail(rd, "no resolver");
        return;
    }

    ctx->name = rd->conf->host;
    ctx->handler = ngx_http_usage_redis_resolved;
    ctx->data = rd;
    ctx->timeout = rd->conf->resolver_timeout;
    ctx->cancelable = 1;

    rd->resolving = ctx;
    rd->state = NGX_HTTP_USAGE_REDIS_RESOLVING;

    /* the handler may run before this returns (a name in the cache):
     * nothing may follow the call */
    if (ngx_resolve_name(ctx) != NGX_OK) {
        rd->resolving = NULL;
        ngx_http_usage_redis_fail(rd, "the resolver failed");
    }
}


static void
ngx_http_usage_redis_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_http_usage_redis_t *rd = ctx->data;

    ngx_uint_t  i;

    rd->resolving = NULL;

    if (ctx->state || ctx->naddrs == 0) {
        ngx_log_error(ngx_http_usage_redis_level(rd), rd->log, 0,
                      "usage sync: redis host \"%V\" could not be resolved "
                      "(%i: %s)", &ctx->name, ctx->state,
                      ngx_resolver_strerror(ctx->state));
        ngx_resolve_name_done(ctx);
        ngx_http_usage_redis_fail(rd, NULL);
        return;
    }

    /* copied out: ngx_resolve_name_done() frees the addresses */
    i = rd->next_addr++ % ctx->naddrs;

    ngx_http_usage_redis_set_addr(rd, ctx->addrs[i].sockaddr,
                                  ctx->addrs[i].socklen);

    ngx_resolve_name_done(ctx);

    ngx_http_usage_redis_connect(rd);
}


static void
ngx_http_usage_redis_set_addr(ngx_http_usage_redis_t *rd,
    struct sockaddr *sa, socklen_t len)
{
    ngx_memcpy(&rd->sockaddr, sa, len);
    rd->socklen = len;
    ngx_inet_set_port(&rd->sockaddr.sockaddr, rd->conf->port);

    rd->name.data = rd->name_text;
    rd->name.len = ngx_sock_ntop(&rd->sockaddr.sockaddr, rd->socklen,
                                 rd->name_text, NGX_SOCKADDR_STRLEN, 1);
}


static void
ngx_http_usage_redis_connect(ngx_http_usage_redis_t *rd)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    rd->pool = ngx_create_pool(1024, rd->log);

    if (rd->pool == NULL || ngx_http_usage_redis_reader(rd) != NGX_OK) {
        ngx_http_usage_redis_fail(rd, "out of memory");
        return;
    }

    ngx_memzero(&rd->peer, sizeof(ngx_peer_connection_t));

    rd->peer.sockaddr = &rd->sockaddr.sockaddr;
    rd->peer.socklen = rd->socklen;
    rd->peer.name = &rd->name;
    rd->peer.get = ngx_event_get_peer;
    rd->peer.log = rd->log;
    rd->peer.log_error = (rd->quiet || rd->second) ? NGX_ERROR_INFO
                                                   : NGX_ERROR_ERR;

    /* a dead peer is found without traffic */
    rd->peer.so_keepalive = 1;

    rd->state = NGX_HTTP_USAGE_REDIS_CONNECTING;

    rc = ngx_event_connect_peer(&rd->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        /* logged by nginx; the connection, if any, is closed */
        rd->peer.connection = NULL;
        ngx_http_usage_redis_fail(rd, NULL);
        return;
    }

    c = rd->peer.connection;
    c->data = rd;
    c->pool = rd->pool;           /* ngx_ssl_create_connection() uses it */
    c->read->handler = ngx_http_usage_redis_read_handler;
    c->write->handler = ngx_http_usage_redis_write_handler;

    /* the connect and the TLS handshake, on the write event */
    ngx_add_timer(c->write, rd->conf->connect_timeout);

    if (rc == NGX_OK) {
        ngx_http_usage_redis_write_handler(c->write);
    }
}


/* the outcome of a connect() that was in progress */

static ngx_int_t
ngx_http_usage_redis_test_connect(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        c->log->action = "connecting to redis";
        (void) ngx_connection_error(c, err, "connect() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_usage_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t        *c;
    ngx_http_usage_redis_t  *rd;

    c = wev->data;
    rd = c->data;

    if (wev->timedout) {
        ngx_http_usage_redis_fail(rd, "connecting timed out");
        return;
    }

    if (rd->state == NGX_HTTP_USAGE_REDIS_CONNECTING) {

        if (ngx_http_usage_redis_test_connect(c) != NGX_OK) {
            ngx_http_usage_redis_fail(rd, NULL);
            return;
        }

#if (NGX_SSL)
        if (rd->conf->ssl) {
            ngx_http_usage_redis_ssl_init(rd, c);
            return;
        }
#endif

        ngx_http_usage_redis_connected(rd);
        return;
    }

    if (ngx_http_usage_redis_flush(rd) != NGX_OK) {
        ngx_http_usage_redis_fail(rd, "writing failed");
    }
}


/*
 * Connected (and TLS done): AUTH and CLIENT SETNAME go out in one write,
 * and the connection is ready when CLIENT SETNAME answers.  No HELLO:
 * hiredis 0.14 speaks RESP2 only, which is what a connection starts in.
 */

static void
ngx_http_usage_redis_connected(ngx_http_usage_redis_t *rd)
{
    int                           argc;
    size_t                        lens[4];
    const char                   *argv[4];
    ngx_connection_t             *c;
    ngx_http_usage_redis_conf_t  *conf;

    c = rd->peer.connection;
    conf = rd->conf;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    rd->state = NGX_HTTP_USAGE_REDIS_AUTH;

    if (conf->password.len) {
        argc = 0;
        argv[argc] = "AUTH";
        lens[argc++] = 4;

        if (conf->user.len) {
            argv[argc] = (const char *) conf->user.data;
            lens[argc++] = conf->user.len;
        }

        argv[argc] = (const char *) conf->password.data;
        lens[argc++] = conf->password.len;

        if (ngx_http_usage_redis_queue(rd, argc, argv, lens,
                                       ngx_http_usage_redis_auth_done, NULL)
            != NGX_OK)
        {
            ngx_http_usage_redis_fail(rd, "out of memory");
            return;
        }
    }

    argv[0] = "CLIENT";
    lens[0] = 6;
    argv[1] = "SETNAME";
    lens[1] = 7;
    argv[2] = (const char *) conf->client_name.data;
    lens[2] = conf->client_name.len;

    if (ngx_http_usage_redis_queue(rd, 3, argv, lens,
                                   ngx_http_usage_redis_setname_done, NULL)
        != NGX_OK)
    {
        ngx_http_usage_redis_fail(rd, "out of memory");
        return;
    }

    if (ngx_http_usage_redis_flush(rd) != NGX_OK) {
        ngx_http_usage_redis_fail(rd, "writing failed");
    }
}


#if (NGX_SSL)

static void
ngx_http_usage_redis_ssl_init(ngx_http_usage_redis_t *rd, ngx_connection_t *c)
{
    ngx_int_t  rc;

    if (ngx_ssl_create_connection(rd->conf->ssl, c,
                                  NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_http_usage_redis_fail(rd, "no TLS connection");
        return;
    }

    /* SNI: a managed Redis routes and certifies by name */
    if (rd->conf->ssl_name
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) rd->conf->host.data)
           == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, rd->log, 0,
                      "SSL_set_tlsext_host_name(\"%s\") failed",
                      rd->conf->host.data);
        ngx_http_usage_redis_fail(rd, NULL);
        return;
    }

    rd->state = NGX_HTTP_USAGE_REDIS_HANDSHAKE;

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        /* the handshake holds c's handlers until it calls this back */
        c->ssl->handler = ngx_http_usage_redis_ssl_handshaked;
        return;
    }

    ngx_http_usage_redis_ssl_handshaked(c);
}


static void
ngx_http_usage_redis_ssl_handshaked(ngx_connection_t *c)
{
    long                     rc;
    ngx_http_usage_redis_t  *rd;

    rd = c->data;

    if (!c->ssl->handshaked) {
        ngx_http_usage_redis_fail(rd, c->write->timedout
                                      ? "the TLS handshake timed out"
                                      : "the TLS handshake failed");
        return;
    }

    if (rd->conf->ssl_verify) {
        rc = SSL_get_verify_result(c->ssl->connection);

        if (rc != X509_V_OK) {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "usage sync: redis %V: certificate verify error "
                          "(%l: %s)", &rd->name, rc,
                          X509_verify_cert_error_string(rc));
            ngx_http_usage_redis_fail(rd, NULL);
            return;
        }

        if (rd->conf->ssl_name
            && ngx_ssl_check_host(c, &rd->conf->host) != NGX_OK)
        {
            ngx_http_usage_redis_fail(rd, "its certificate does not match "
                                          "the host name");
            return;
        }
    }

    /* back to this file's handlers: c->recv and c->send are now TLS's */
    c->read->handler = ngx_http_usage_redis_read_handler;
    c->write->handler = ngx_http_usage_redis_write_handler;

    ngx_http_usage_redis_connected(rd);
}

#endif


static void
ngx_http_usage_redis_auth_done(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ERROR) {
        return;
    }

    /* the same bad credentials, logged once until they work again */
    if (!rd->auth_failed) {
        ngx_log_error(ngx_http_usage_redis_auth_level(rd), rd->log, 0,
                      "usage sync: redis %V refused the credentials: %s",
                      &rd->name, reply->str);
    }

    rd->auth_failed = 1;
    rd->delay = rd->conf->backoff_max;

    ngx_http_usage_redis_fail(rd, NULL);
}


static void
ngx_http_usage_redis_setname_done(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        /* -NOAUTH without a password configured: say what is missing,
         * once until it works */
        if (!rd->auth_failed) {
            ngx_log_error(ngx_http_usage_redis_auth_level(rd), rd->log, 0,
                          "usage sync: redis %V: %s", &rd->name, reply->str);
        }

        rd->auth_failed = 1;
        rd->delay = rd->conf->backoff_max;
        ngx_http_usage_redis_fail(rd, NULL);
        return;
    }

    if (rd->auth_failed) {
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "usage sync: redis %V accepted the credentials",
                      &rd->name);
        rd->auth_failed = 0;
    }

    /* a redis that takes connections and drops them keeps its delay
     * until a command has worked */
    rd->delay = 0;
    rd->state = NGX_HTTP_USAGE_REDIS_READY;

    if (rd->ready) {
        rd->ready(rd);
    }
}


/* a command of the caller's: only on a ready connection */

ngx_int_t
ngx_http_usage_redis_send(ngx_http_usage_redis_t *rd, int argc,
    const char **argv, const size_t *argvlen,
    ngx_http_usage_redis_reply_pt handler, void *data)
{
    if (rd->state != NGX_HTTP_USAGE_REDIS_READY
        || rd->n == NGX_HTTP_USAGE_REDIS_INFLIGHT)
    {
        return NGX_AGAIN;
    }

    if (ngx_http_usage_redis_queue(rd, argc, argv, argvlen, handler, data)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_usage_redis_flush(rd) != NGX_OK) {
        ngx_http_usage_redis_fail(rd, "writing failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_redis_queue(ngx_http_usage_redis_t *rd, int argc,
    const char **argv, const size_t *argvlen,
    ngx_http_usage_redis_reply_pt handler, void *data)
{
    int                          len;
    char                        *cmd;
    ngx_http_usage_redis_cmd_t  *q;

    if (rd->n == NGX_HTTP_USAGE_REDIS_INFLIGHT) {
        return NGX_ERROR;
    }

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return NGX_ERROR;
    }

    if (ngx_http_usage_redis_room(rd, len) != NGX_OK) {
        redisFreeCommand(cmd);
        return NGX_ERROR;
    }

    ngx_memcpy(rd->out + rd->out_len, cmd, len);
    rd->out_len += len;
    redisFreeCommand(cmd);

    q = &rd->cmds[(rd->head + rd->n++) % NGX_HTTP_USAGE_REDIS_INFLIGHT];
    q->handler = handler;
    q->data = data;
    q->sent = ngx_current_msec;

    /* one timer for every reply awaited: the oldest bounds the wait */
    if (!rd->peer.connection->read->timer_set) {
        ngx_add_timer(rd->peer.connection->read, rd->conf->timeout);
    }

    return NGX_OK;
}


/*
 * Room for len more bytes of output.  Only the bytes not yet sent move:
 * a TLS write that must be retried retries from nginx's own buffer
 * (NGX_SSL_BUFFER), never from this one.
 */

static ngx_int_t
ngx_http_usage_redis_room(ngx_http_usage_redis_t *rd, size_t len)
{
    u_char  *p;
    size_t   size;

    if (rd->out_len + len <= rd->out_size) {
        return NGX_OK;
    }

    if (rd->out_pos) {
        size = rd->out_len - rd->out_pos;
        ngx_memmove(rd->out, rd->out + rd->out_pos, size);
        rd->out_len = size;
        rd->out_pos = 0;
    }

    if (rd->out_len + len <= rd->out_size) {
        return NGX_OK;
    }

    size = ngx_max(2 * rd->out_size, ngx_max(rd->out_len + len, 16384));

    p = ngx_alloc(size, rd->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (rd->out) {
        ngx_memcpy(p, rd->out, rd->out_len);
        ngx_free(rd->out);
    }

    rd->out = p;
    rd->out_size = size;

    return NGX_OK;
}


/*
 * What is formatted goes out through c->send_chain(): writev() on plain
 * TCP; with TLS a copy into nginx's buffer that it retries from.  A
 * partial write is normal: the write event sends the rest.
 */

static ngx_int_t
ngx_http_usage_redis_flush(ngx_http_usage_redis_t *rd)
{
    ngx_buf_t          b;
    ngx_chain_t        cl, *rest;
    ngx_connection_t  *c;

    c = rd->peer.connection;

    if (rd->out_pos < rd->out_len || c->buffered) {
        ngx_memzero(&b, sizeof(ngx_buf_t));
        b.pos = rd->out + rd->out_pos;
        b.last = rd->out + rd->out_len;
        b.temporary = 1;
        b.flush = 1;

        cl.buf = &b;
        cl.next = NULL;

        rest = c->send_chain(c, (b.pos < b.last) ? &cl : NULL, 0);

        if (rest == NGX_CHAIN_ERROR) {
            return NGX_ERROR;
        }

        rd->out_pos = b.pos - rd->out;

        if (rd->out_pos == rd->out_len) {
            rd->out_pos = 0;
            rd->out_len = 0;
        }
    }

    return ngx_handle_write_event(c->write, 0);
}


static void
ngx_http_usage_redis_read_handler(ngx_event_t *rev)
{
    ngx_connection_t        *c;
    ngx_http_usage_redis_t  *rd;

    c = rev->data;
    rd = c->data;

    if (c->close) {
        /* worker_shutdown_timeout */
        ngx_http_usage_redis_fail(rd, NULL);
        return;
    }

    if (rev->timedout) {
        ngx_http_usage_redis_fail(rd, "no reply in time");
        return;
    }

    if (rd->state == NGX_HTTP_USAGE_REDIS_CONNECTING) {
        /* a refused connect() reports on both events: say it as one */
        if (ngx_http_usage_redis_test_connect(c) != NGX_OK) {
            ngx_http_usage_redis_fail(rd, NULL);
        }

        return;
    }

    if (ngx_http_usage_redis_replies(rd) != NGX_OK) {
        return;                     /* failed, or closed by a handler */
    }

    if (rev->timer_set) {
        ngx_del_timer(rev);
    }

    if (rd->n) {
        /* each reply awaited gets its full time after the last one */
        ngx_add_timer(rev, rd->conf->timeout);
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_usage_redis_fail(rd, "reading failed");
    }
}


/*
 * Reads until EAGAIN (epoll reports readiness once per arrival) and hands
 * every complete reply to its handler.  Replies are taken out after each
 * read: hiredis moves its buffer's rest at each kilobyte consumed, so it
 * is kept short.  NGX_DONE: the connection is gone.
 */

static ngx_int_t
ngx_http_usage_redis_replies(ngx_http_usage_redis_t *rd)
{
    int                rc;
    void              *reply;
    ssize_t            n;
    ngx_connection_t  *c;
    u_char             buf[16384];

    c = rd->peer.connection;

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            return NGX_OK;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_http_usage_redis_fail(rd, (n == 0) ? "redis closed the "
                                                     "connection"
                                                   : "reading failed");
            return NGX_DONE;
        }

        if (rd->reader->len - rd->reader->pos + n > rd->conf->reply_max) {
            ngx_http_usage_redis_fail(rd, "a reply is too large");
            return NGX_DONE;
        }

        if (redisReaderFeed(rd->reader, (char *) buf, n) != REDIS_OK) {
            ngx_http_usage_redis_fail(rd, "out of memory");
            return NGX_DONE;
        }

        for ( ;; ) {
            rc = redisReaderGetReply(rd->reader, &reply);

            if (rc != REDIS_OK) {
                ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                              "usage sync: redis %V sent what is not a "
                              "reply: %s", &rd->name,
                              rd->refused ? rd->refused : rd->reader->errstr);
                ngx_http_usage_redis_fail(rd, NULL);
                return NGX_DONE;
            }

            if (reply == NULL) {
                break;
            }

            ngx_http_usage_redis_dispatch(rd, reply);
            freeReplyObject(reply);

            if (rd->peer.connection == NULL) {
                return NGX_DONE;
            }
        }
    }
}


static void
ngx_http_usage_redis_dispatch(ngx_http_usage_redis_t *rd, redisReply *reply)
{
    ngx_http_usage_redis_cmd_t  *q;

    if (rd->n == 0) {
        /* nobody asked: the order of replies is lost */
        ngx_http_usage_redis_fail(rd, "a reply nobody asked for");
        return;
    }

    q = &rd->cmds[rd->head];
    rd->head = (rd->head + 1) % NGX_HTTP_USAGE_REDIS_INFLIGHT;
    rd->n--;

    rd->rtt = ngx_current_msec - q->sent;

    q->handler(rd, q->data, reply);
}


/* closes the connection, fails what waits, and reconnects later */

/*
 * A reply that is not of the kind the command has (an error, or another
 * type): an [error] naming the command and what came, and the connection
 * starts over.
 */

void
ngx_http_usage_redis_unexpected(ngx_http_usage_redis_t *rd,
    const char *command, redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "usage sync: redis %V answered %s with: %*s",
                      &rd->name, command, (size_t) reply->len, reply->str);

    } else {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "usage sync: redis %V answered %s with a reply of "
                      "type %d", &rd->name, command, reply->type);
    }

    ngx_http_usage_redis_fail(rd, NULL);
}


void
ngx_http_usage_redis_fail(ngx_http_usage_redis_t *rd, const char *why)
{
    ngx_msec_t                   delay;
    ngx_http_usage_redis_cmd_t  *q;

    if (why) {
        ngx_log_error(ngx_http_usage_redis_level(rd), rd->log, 0,
                      "usage sync: redis %V: %s", &rd->name, why);
    }

    ngx_http_usage_redis_close(rd);

    /* what was in flight may or may not have run: its callers decide */
    while (rd->n) {
        q = &rd->cmds[rd->head];
        rd->head = (rd->head + 1) % NGX_HTTP_USAGE_REDIS_INFLIGHT;
        rd->n--;
        q->handler(rd, q->data, NULL);
    }

    if (rd->down) {
        rd->down(rd);
    }

    if (rd->stopped || ngx_exiting || ngx_terminate || ngx_quit
        || rd->retry.timer_set)
    {
        return;
    }

    /* exponential, with jitter: half to all of the delay */
    rd->delay = rd->delay ? ngx_min(rd->delay * 2, rd->conf->backoff_max)
                          : rd->conf->backoff_min;

    delay = rd->delay / 2 + ngx_random() % (rd->delay / 2 + 1);

    ngx_add_timer(&rd->retry, delay);
}


static void
ngx_http_usage_redis_close(ngx_http_usage_redis_t *rd)
{
    ngx_connection_t  *c;

    if (rd->resolving) {
        ngx_resolve_name_done(rd->resolving);
        rd->resolving = NULL;
    }

    c = rd->peer.connection;

    if (c) {
#if (NGX_SSL)
        if (c->ssl) {
            c->ssl->no_wait_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }
#endif
        /* its timers and events go with it; its pool does not */
        ngx_close_connection(c);
        rd->peer.connection = NULL;
    }

    if (rd->pool) {
        ngx_destroy_pool(rd->pool);
        rd->pool = NULL;
    }

    if (rd->reader) {
        redisReaderFree(rd->reader);
        rd->reader = NULL;
    }

    rd->out_pos = 0;
    rd->out_len = 0;
    rd->refused = NULL;
    rd->state = NGX_HTTP_USAGE_REDIS_IDLE;
}


static void
ngx_http_usage_redis_retry_handler(ngx_event_t *ev)
{
    ngx_http_usage_redis_t  *rd;

    rd = ev->data;

    if (!rd->stopped) {
        ngx_http_usage_redis_start(rd);
    }
}


/*
 * A reader of the connection's replies: hiredis's own functions, but with
 * arrays capped (hiredis 0.14 would allocate what a reply announces).
 * The reader's private data is rd, for the reason of a refusal.
 */

static ngx_int_t
ngx_http_usage_redis_reader(ngx_http_usage_redis_t *rd)
{
    rd->reader = redisReaderCreate();
    if (rd->reader == NULL) {
        return NGX_ERROR;
    }

    rd->fn = *rd->reader->fn;

    if (rd->fn.createArray != ngx_http_usage_redis_create_array) {
        ngx_http_usage_redis_array = rd->fn.createArray;
    }

    rd->fn.createArray = ngx_http_usage_redis_create_array;

    rd->reader->fn = &rd->fn;
    rd->reader->privdata = rd;

    return NGX_OK;
}


static void *
ngx_http_usage_redis_create_array(const redisReadTask *task, int elements)
{
    ngx_http_usage_redis_t  *rd;

    rd = task->privdata;

    if (elements > 0 && (ngx_uint_t) elements > rd->conf->elements_max) {
        rd->refused = "an array longer than allowed";
        return NULL;
    }

    return ngx_http_usage_redis_array(task, elements);
}
