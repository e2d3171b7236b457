
/*
 * usage_metrics: the Prometheus exposition, and the traffic counters.
 */


#ifndef _NGX_HTTP_USAGE_METRICS_H_INCLUDED_
#define _NGX_HTTP_USAGE_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_store.h"


ngx_int_t ngx_http_usage_metrics_handler(ngx_http_request_t *r);
void ngx_http_usage_metrics_count(ngx_http_usage_zone_t *zone,
    ngx_http_request_t *r, ngx_uint_t status, int64_t ms);


#endif /* _NGX_HTTP_USAGE_METRICS_H_INCLUDED_ */
