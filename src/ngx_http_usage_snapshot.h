
/*
 * The fleet's snapshot in Redis (docs/FLEET-DESIGN.md, section 4.7): the
 * state file's bytes of one instance's zone, in chunks, and a manifest
 * that names them and where in the stream they stand.  Every interval
 * the instance that takes the lease writes one, then trims the stream to
 * the previous one's position, so that Redis keeps a bounded stream; a
 * new instance loads the latest before it reads the stream from there,
 * so that its totals hold what was trimmed.  On the sync's command
 * connection, in the worker that holds the zone's lease.
 */


#ifndef _NGX_HTTP_USAGE_SNAPSHOT_H_INCLUDED_
#define _NGX_HTTP_USAGE_SNAPSHOT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"
#include "ngx_http_usage_redis.h"
#include "ngx_http_usage_stream.h"


/* bytes of one chunk: one SET or GET each, well inside a reply's bound */
#define NGX_HTTP_USAGE_SNAPSHOT_CHUNK   (4 * 1024 * 1024)

/* chunks of one snapshot, at most: all of them are pipelined at once */
#define NGX_HTTP_USAGE_SNAPSHOT_CHUNKS  192

/* loads that fail before a new zone reads the whole stream instead */
#define NGX_HTTP_USAGE_SNAPSHOT_TRIES   3


typedef struct {
    ngx_str_t                    key;          /* <stream>:snapshot, the
                                                  manifest; chunks are
                                                  <key>:<gen>:<i> */
    ngx_str_t                    lease;        /* <stream>:snapshot:lease */
    ngx_msec_t                   interval;     /* snapshot=, 0: off */
} ngx_http_usage_snapshot_conf_t;


typedef struct {
    ngx_http_usage_snapshot_conf_t  *conf;
    ngx_http_usage_snapshot_shm_t   *shm;
    ngx_str_t                       *stream_key;
    ngx_str_t                       *epoch_key;
    ngx_http_usage_zone_t           *zone;
    ngx_http_usage_redis_t          *cmd;
    ngx_http_usage_stream_t         *stream;
    ngx_log_t                       *log;

    ngx_uint_t                       busy;     /* replies awaited */
    ngx_msec_t                       tried;    /* the last write or load */
    ngx_uint_t                       tries;    /* loads that failed */
    uint64_t                         counter;  /* generations written */
    uint64_t                         written_ms;   /* where the last one */
    uint64_t                         written_seq;  /* stood */

    /* a load */
    u_char                          *buf;
    size_t                           len;
    uint32_t                         crc;
    ngx_uint_t                       chunks;
    ngx_uint_t                       got;
    ngx_uint_t                       failed;
} ngx_http_usage_snapshot_t;


void ngx_http_usage_snapshot_init(ngx_http_usage_snapshot_t *snap,
    ngx_http_usage_snapshot_conf_t *conf, ngx_http_usage_snapshot_shm_t *shm,
    ngx_str_t *stream_key, ngx_str_t *epoch_key, ngx_http_usage_zone_t *zone,
    ngx_http_usage_redis_t *cmd, ngx_http_usage_stream_t *stream,
    ngx_log_t *log);

/*
 * The lease holder's tick, with the epoch checked on this connection: a
 * new zone loads the snapshot (or learns there is none), the others
 * write one when the interval has passed and the lease is theirs.
 */
void ngx_http_usage_snapshot_tick(ngx_http_usage_snapshot_t *snap);

/* the command connection was lost: a load starts over */
void ngx_http_usage_snapshot_down(ngx_http_usage_snapshot_t *snap);


#endif /* _NGX_HTTP_USAGE_SNAPSHOT_H_INCLUDED_ */
