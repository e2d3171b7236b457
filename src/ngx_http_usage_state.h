
/*
 * The state file, and carrying the store of a resized zone across a
 * reload: the zone's start-up goes through here.
 */


#ifndef _NGX_HTTP_USAGE_STATE_H_INCLUDED_
#define _NGX_HTTP_USAGE_STATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"


ngx_int_t ngx_http_usage_state_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
void ngx_http_usage_state_init_worker(ngx_cycle_t *cycle,
    ngx_http_usage_zone_t *zone);
void ngx_http_usage_state_save(ngx_http_usage_zone_t *zone, ngx_log_t *log);


#endif /* _NGX_HTTP_USAGE_STATE_H_INCLUDED_ */
