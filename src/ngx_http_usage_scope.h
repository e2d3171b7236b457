
/*
 * usage_entity_scope and API keys: which entity a request may see.
 */


#ifndef _NGX_HTTP_USAGE_SCOPE_H_INCLUDED_
#define _NGX_HTTP_USAGE_SCOPE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_USAGE_SCOPE_READ       0
#define NGX_HTTP_USAGE_SCOPE_RECORD     1
#define NGX_HTTP_USAGE_SCOPE_STORE      2


ngx_int_t ngx_http_usage_scope(ngx_http_request_t *r, ngx_str_t *scope);
ngx_int_t ngx_http_usage_scope_store(ngx_http_request_t *r,
    ngx_str_t *scope);
ngx_int_t ngx_http_usage_scope_forbidden(ngx_http_request_t *r,
    ngx_str_t *scope, ngx_uint_t what);


#endif /* _NGX_HTTP_USAGE_SCOPE_H_INCLUDED_ */
