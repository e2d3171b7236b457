
/*
 * usage_sync: the instances of a fleet share their events through Redis.
 * One worker of an instance, elected through the zone, holds its Redis
 * connection; every worker reads the state it leaves in the zone.
 */


#ifndef _NGX_HTTP_USAGE_SYNC_H_INCLUDED_
#define _NGX_HTTP_USAGE_SYNC_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_store.h"
#include "ngx_http_usage_redis.h"
#include "ngx_http_usage_stream.h"
#include "ngx_http_usage_snapshot.h"


/* the sync state of a zone, as /ready, /info and /metrics name it */
#define NGX_HTTP_USAGE_SYNC_CONNECTING  0     /* never connected yet */
#define NGX_HTTP_USAGE_SYNC_OK          1
#define NGX_HTTP_USAGE_SYNC_DEGRADED    2     /* lost, or refused */
#define NGX_HTTP_USAGE_SYNC_BOOTSTRAPPING  3  /* connected, a new zone that
                                                 has not yet loaded the
                                                 fleet's snapshot (or
                                                 learnt there is none) */


typedef struct {
    ngx_str_t                    zone_name;
    ngx_shm_zone_t              *shm_zone;
    ngx_str_t                    file;         /* where it is configured */
    ngx_uint_t                   line;

    ngx_http_usage_redis_conf_t  redis;
    ngx_str_t                    address;      /* redis= as given */
    ngx_str_t                    stream;
    ngx_str_t                    epoch_key;    /* <stream>:epoch */
    ngx_str_t                    name;         /* of this instance */
    ngx_msec_t                   interval;     /* of the liveness check */
    ngx_msec_t                   ack_timeout;  /* ack=redis: a POST's wait */
    size_t                       buffer;       /* the ship queue's bound,
                                                  0: a quarter of the zone */
    ngx_http_usage_stream_conf_t streaming;    /* stream= name= maxlen=
                                                  batch= */
    ngx_http_usage_snapshot_conf_t snapshots;  /* snapshot= */

#if (NGX_SSL)
    ngx_flag_t                   tls;
    ngx_str_t                    tls_trusted;
#endif
} ngx_http_usage_sync_conf_t;


typedef struct {
    ngx_uint_t                   state;
    ngx_pid_t                    owner;
    ngx_msec_t                   rtt;
    uint64_t                     connects;
    uint64_t                     failures;
    uint64_t                     snapshots_written;
    uint64_t                     snapshot_failures;
    uint64_t                     trimmed;
    int64_t                      since;        /* ms, of the state */
    ngx_http_usage_sync_conf_t  *conf;
} ngx_http_usage_sync_status_t;


char *ngx_http_usage_sync(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_usage_sync_init_conf(ngx_conf_t *cf);
void ngx_http_usage_sync_init_worker(ngx_cycle_t *cycle);
void ngx_http_usage_sync_exit_worker(ngx_cycle_t *cycle);

ngx_int_t ngx_http_usage_sync_status(ngx_http_usage_zone_t *zone,
    ngx_http_usage_sync_status_t *st);
const char *ngx_http_usage_sync_state_name(ngx_uint_t state);


#endif /* _NGX_HTTP_USAGE_SYNC_H_INCLUDED_ */
