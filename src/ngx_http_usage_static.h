
/*
 * Answers with an asset embedded in the module (scripts/embed): its type,
 * ETag and If-None-Match, an HTML page's own Content-Security-Policy; and
 * whether a client asks for HTML rather than JSON.
 */


#ifndef _NGX_HTTP_USAGE_STATIC_H_INCLUDED_
#define _NGX_HTTP_USAGE_STATIC_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


ngx_int_t ngx_http_usage_send_asset(ngx_http_request_t *r, ngx_uint_t id);
ngx_uint_t ngx_http_usage_prefers_html(ngx_http_request_t *r);


#endif /* _NGX_HTTP_USAGE_STATIC_H_INCLUDED_ */
