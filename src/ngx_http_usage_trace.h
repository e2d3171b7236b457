
/*
 * Trace ids: $usage_trace_id, and the error-log context that carries it.
 */


#ifndef _NGX_HTTP_USAGE_TRACE_H_INCLUDED_
#define _NGX_HTTP_USAGE_TRACE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_USAGE_TRACE_ID_MAX     128


ngx_int_t ngx_http_usage_trace_id(ngx_http_request_t *r, ngx_str_t *id);
ngx_int_t ngx_http_usage_trace_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
ngx_int_t ngx_http_usage_trace_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_USAGE_TRACE_H_INCLUDED_ */
