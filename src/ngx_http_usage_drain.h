
/*
 * usage_drain_file: graceful drain behind a balancer.
 */


#ifndef _NGX_HTTP_USAGE_DRAIN_H_INCLUDED_
#define _NGX_HTTP_USAGE_DRAIN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"


ngx_uint_t ngx_http_usage_draining(ngx_http_request_t *r);
ngx_uint_t ngx_http_usage_drain_check(ngx_http_usage_drain_t *drain);


#endif /* _NGX_HTTP_USAGE_DRAIN_H_INCLUDED_ */
