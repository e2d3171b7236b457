
/*
 * URI decoding: path segments, query arguments, the path check.
 */


#ifndef _NGX_HTTP_USAGE_URI_H_INCLUDED_
#define _NGX_HTTP_USAGE_URI_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* ngx_http_usage_path_check() results */
#define NGX_HTTP_USAGE_PATH_SAME     0
#define NGX_HTTP_USAGE_PATH_OTHER    1
#define NGX_HTTP_USAGE_PATH_DOTS     2


ngx_int_t ngx_http_usage_unescape_path(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);
ngx_uint_t ngx_http_usage_path_check(ngx_str_t *path, ngx_str_t *uri);
ngx_int_t ngx_http_usage_arg(ngx_pool_t *pool, ngx_str_t *args,
    const char *name, ngx_str_t *value);
ngx_int_t ngx_http_usage_time_arg(ngx_pool_t *pool, ngx_str_t *args,
    const char *name, ngx_str_t *value, int64_t *ms);


#endif /* _NGX_HTTP_USAGE_URI_H_INCLUDED_ */
