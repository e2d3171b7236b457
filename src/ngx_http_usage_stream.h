
/*
 * The fleet's Redis Stream: what the worker holding a zone's lease does
 * with it.  It ships the zone's queue of new events (XADD, one entry per
 * batch, pipelined) on the sync's command connection, and reads every
 * entry of the other instances (XREAD BLOCK, on a connection of its own)
 * into the zone.  docs/FLEET-DESIGN.md, sections 4.5 and 4.6.
 */


#ifndef _NGX_HTTP_USAGE_STREAM_H_INCLUDED_
#define _NGX_HTTP_USAGE_STREAM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_usage_store.h"
#include "ngx_http_usage_redis.h"


/* batch=, at most: a reader refuses larger entries */
#define NGX_HTTP_USAGE_STREAM_BATCH_MAX  10000

/* batches sent and not answered yet, on one connection */
#define NGX_HTTP_USAGE_STREAM_INFLIGHT  4

/* replicas=, at most */
#define NGX_HTTP_USAGE_STREAM_REPLICAS  16


typedef struct {
    ngx_str_t                    key;          /* the stream */
    ngx_str_t                    name;         /* this instance's label */
    ngx_uint_t                   maxlen;       /* XADD MAXLEN ~ */
    ngx_uint_t                   batch;        /* events per entry */
    ngx_msec_t                   block;        /* XREAD BLOCK, and WAIT */
    ngx_uint_t                   replicas;     /* a batch is Redis's once
                                                  on this many replicas */
    ngx_uint_t                   ack;          /* ack=redis: batches with
                                                  POSTs that wait for them
                                                  carry a deadline */
} ngx_http_usage_stream_conf_t;


typedef struct {
    ngx_http_usage_stream_conf_t  *conf;
    ngx_http_usage_zone_t         *zone;
    ngx_log_t                     *log;

    ngx_http_usage_redis_t        *cmd;        /* the sync's connection */
    ngx_http_usage_redis_t         reader;
    ngx_http_usage_redis_conf_t    reader_conf;

    ngx_event_t                    ship;       /* looks for new events */
    uint64_t                       sent;       /* last seq sent on cmd */
    uint64_t                       acks[NGX_HTTP_USAGE_STREAM_INFLIGHT];
    ngx_uint_t                     acks_head;
    ngx_uint_t                     acks_n;
    ngx_uint_t                     skip;       /* answers to ignore: of
                                                  batches sent after one
                                                  Redis refused */
    u_char                        *buf;        /* one batch's records */
    size_t                         size;

    int64_t                        clock;      /* ack=redis: Redis's clock
                                                  minus this host's, ms */
    ngx_uint_t                     clock_known;
    int64_t                        refused_warned;

    uint64_t                       origin;     /* this zone's */
    uint64_t                       own_upto;   /* the zone's, at the last
                                                  XREAD */
    ngx_uint_t                     reading;    /* a read is awaited */
    ngx_uint_t                     checked;    /* the position, against
                                                  the stream's trimming,
                                                  on this connection */
    ngx_uint_t                     rebooted;   /* it asked for a snapshot
                                                  since it found the
                                                  stream trimmed */
    ngx_uint_t                     active;
    int64_t                        warned;     /* ms, of the last [warn] */
    int64_t                        wait_warned;
} ngx_http_usage_stream_t;


ngx_int_t ngx_http_usage_stream_init(ngx_http_usage_stream_t *st,
    ngx_http_usage_stream_conf_t *conf, ngx_http_usage_zone_t *zone,
    ngx_http_usage_redis_t *cmd, ngx_http_usage_redis_conf_t *redis,
    ngx_pool_t *pool, ngx_log_t *log);

/* the lease was taken, or let go */
void ngx_http_usage_stream_start(ngx_http_usage_stream_t *st);
void ngx_http_usage_stream_stop(ngx_http_usage_stream_t *st);

/* the command connection came up (resend what Redis did not confirm),
 * or was lost */
void ngx_http_usage_stream_up(ngx_http_usage_stream_t *st);
void ngx_http_usage_stream_flush(ngx_http_usage_stream_t *st);
void ngx_http_usage_stream_down(ngx_http_usage_stream_t *st);

/* a new zone's snapshot is loaded, or there is none: read from there */
void ngx_http_usage_stream_resume(ngx_http_usage_stream_t *st);

/* Redis lost the stream: read it again from the position reset */
void ngx_http_usage_stream_lost(ngx_http_usage_stream_t *st);


#endif /* _NGX_HTTP_USAGE_STREAM_H_INCLUDED_ */
