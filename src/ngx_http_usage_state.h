
/*
 * The state file, and carrying the store of a resized zone across a
 * reload: the zone's start-up goes through here.
 */


#ifndef _NGX_HTTP_USAGE_STATE_H_INCLUDED_
#define _NGX_HTTP_USAGE_STATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"


/* a snapshot for the fleet (usage_sync), in process memory */
typedef struct {
    u_char                      *data;         /* ngx_alloc()ed */
    size_t                       len;
    ngx_msec_t                   locked;       /* ms under the zone's lock */
    uint64_t                     origin;       /* of the zone, and where */
    uint64_t                     read_ms;      /* it stands in the stream */
    uint64_t                     read_seq;
    uint64_t                     epoch;
    uint64_t                     events;       /* in the window */
} ngx_http_usage_state_snapshot_t;


ngx_int_t ngx_http_usage_state_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
void ngx_http_usage_state_init_worker(ngx_cycle_t *cycle,
    ngx_http_usage_zone_t *zone);
void ngx_http_usage_state_save(ngx_http_usage_zone_t *zone, ngx_log_t *log);

ngx_int_t ngx_http_usage_state_snapshot(ngx_http_usage_zone_t *zone,
    ngx_http_usage_state_snapshot_t *snap);
ngx_int_t ngx_http_usage_state_bootstrap(ngx_http_usage_zone_t *zone,
    u_char *data, size_t len, ngx_log_t *log);


#endif /* _NGX_HTTP_USAGE_STATE_H_INCLUDED_ */
