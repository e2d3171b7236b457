
/*
 * The single-pass reader of event bodies, the fast path of
 * ngx_http_usage_parse_event(): the fields picked out as the bytes go by,
 * or NGX_DECLINED for a body it leaves to jansson.
 */


#ifndef _NGX_HTTP_USAGE_SCAN_H_INCLUDED_
#define _NGX_HTTP_USAGE_SCAN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_body.h"


typedef ngx_int_t (*ngx_http_usage_scan_each_pt)(void *data,
    ngx_http_usage_fields_t *fields);


ngx_int_t ngx_http_usage_scan_event(ngx_pool_t *pool, u_char *body,
    size_t len, ngx_http_usage_fields_t *fields);
ngx_int_t ngx_http_usage_scan_batch(ngx_pool_t *pool, u_char *body,
    size_t len, ngx_http_usage_scan_each_pt each, void *data);


#endif /* _NGX_HTTP_USAGE_SCAN_H_INCLUDED_ */
