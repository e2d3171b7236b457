
/*
 * usage_track: self-tracking in the log phase.
 */


#ifndef _NGX_HTTP_USAGE_TRACK_H_INCLUDED_
#define _NGX_HTTP_USAGE_TRACK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


ngx_int_t ngx_http_usage_track_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_USAGE_TRACK_H_INCLUDED_ */
