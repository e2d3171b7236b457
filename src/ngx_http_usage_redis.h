
/*
 * A connection to Redis on nginx's event loop: nginx resolves, connects,
 * speaks TLS, keeps the timers and does the I/O; hiredis only formats
 * commands and parses replies (its own contexts block and resolve with
 * getaddrinfo(), so they are never used).  Commands are pipelined: their
 * replies come back in order, each to the handler given with it.  A lost
 * connection fails every command in flight (reply NULL) and reconnects
 * with a growing delay.  Knows nothing of the store or of HTTP.
 */


#ifndef _NGX_HTTP_USAGE_REDIS_H_INCLUDED_
#define _NGX_HTTP_USAGE_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include <hiredis/hiredis.h>


/* replies awaited at once on one connection */
#define NGX_HTTP_USAGE_REDIS_INFLIGHT    256

/* the states of a connection, as /info and /metrics name them */
#define NGX_HTTP_USAGE_REDIS_IDLE        0
#define NGX_HTTP_USAGE_REDIS_RESOLVING   1
#define NGX_HTTP_USAGE_REDIS_CONNECTING  2
#define NGX_HTTP_USAGE_REDIS_HANDSHAKE   3
#define NGX_HTTP_USAGE_REDIS_AUTH        4
#define NGX_HTTP_USAGE_REDIS_READY       5


typedef struct ngx_http_usage_redis_s  ngx_http_usage_redis_t;

/* reply NULL: the connection was lost before the reply came */
typedef void (*ngx_http_usage_redis_reply_pt)(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
typedef void (*ngx_http_usage_redis_event_pt)(ngx_http_usage_redis_t *rd);


/* where and how to connect: made at configuration, shared by processes */
typedef struct {
    ngx_str_t                    host;         /* null-terminated */
    in_port_t                    port;
    ngx_addr_t                  *addrs;        /* a literal, or resolved at
                                                  configuration */
    ngx_uint_t                   naddrs;
    ngx_resolver_t              *resolver;     /* NULL: addrs */
    ngx_msec_t                   resolver_timeout;

    ngx_str_t                    user;         /* AUTH: empty, or ACL user */
    ngx_str_t                    password;     /* empty: no AUTH */
    ngx_str_t                    client_name;  /* CLIENT SETNAME */

    ngx_msec_t                   connect_timeout;
    ngx_msec_t                   timeout;      /* of a reply */
    ngx_msec_t                   backoff_min;
    ngx_msec_t                   backoff_max;

    size_t                       reply_max;    /* bytes of one reply */
    ngx_uint_t                   elements_max; /* of one array */

#if (NGX_SSL)
    ngx_ssl_t                   *ssl;          /* NULL: plain TCP */
    ngx_flag_t                   ssl_verify;
    ngx_flag_t                   ssl_name;     /* SNI and the name checked:
                                                  the host is a name */
#endif
} ngx_http_usage_redis_conf_t;


typedef struct {
    ngx_http_usage_redis_reply_pt  handler;
    void                          *data;
    ngx_msec_t                     sent;
} ngx_http_usage_redis_cmd_t;


struct ngx_http_usage_redis_s {
    ngx_http_usage_redis_conf_t   *conf;
    ngx_log_t                     *log;

    ngx_uint_t                     state;
    ngx_peer_connection_t          peer;
    ngx_pool_t                    *pool;       /* one per connection */
    redisReader                   *reader;     /* one per connection */
    redisReplyObjectFunctions      fn;         /* hiredis's, arrays capped */
    const char                    *refused;    /* why fn refused a reply */

    ngx_resolver_ctx_t            *resolving;
    ngx_uint_t                     next_addr;
    ngx_sockaddr_t                 sockaddr;
    socklen_t                      socklen;
    ngx_str_t                      name;       /* the address, as text */
    u_char                         name_text[NGX_SOCKADDR_STRLEN];

    u_char                        *out;        /* formatted, not yet sent */
    size_t                         out_pos;
    size_t                         out_len;
    size_t                         out_size;

    ngx_http_usage_redis_cmd_t     cmds[NGX_HTTP_USAGE_REDIS_INFLIGHT];
    ngx_uint_t                     head;       /* oldest awaited reply */
    ngx_uint_t                     n;          /* replies awaited */

    ngx_event_t                    retry;      /* reconnect, with backoff */
    ngx_msec_t                     delay;
    ngx_uint_t                     auth_failed;
    ngx_uint_t                     stopped;
    ngx_uint_t                     quiet;      /* known down: failures to
                                                  reconnect log at info */
    ngx_uint_t                     second;     /* another connection to the
                                                  same Redis logs what goes
                                                  wrong: this one at info */

    ngx_msec_t                     rtt;        /* of the last reply */

    ngx_http_usage_redis_event_pt  ready;      /* authenticated */
    ngx_http_usage_redis_event_pt  down;       /* lost, or never got up */
    void                          *data;
};


void ngx_http_usage_redis_init(ngx_http_usage_redis_t *rd,
    ngx_http_usage_redis_conf_t *conf, ngx_log_t *log);
void ngx_http_usage_redis_start(ngx_http_usage_redis_t *rd);
void ngx_http_usage_redis_stop(ngx_http_usage_redis_t *rd);
ngx_int_t ngx_http_usage_redis_send(ngx_http_usage_redis_t *rd, int argc,
    const char **argv, const size_t *argvlen,
    ngx_http_usage_redis_reply_pt handler, void *data);
void ngx_http_usage_redis_fail(ngx_http_usage_redis_t *rd, const char *why);
void ngx_http_usage_redis_unexpected(ngx_http_usage_redis_t *rd,
    const char *command, redisReply *reply);


#endif /* _NGX_HTTP_USAGE_REDIS_H_INCLUDED_ */
