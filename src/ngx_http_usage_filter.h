
/*
 * The header and body filters of the module's locations.
 */


#ifndef _NGX_HTTP_USAGE_FILTER_H_INCLUDED_
#define _NGX_HTTP_USAGE_FILTER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"


ngx_int_t ngx_http_usage_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_http_usage_headers_init(ngx_conf_t *cf,
    ngx_http_usage_loc_conf_t *conf, ngx_http_usage_loc_conf_t *prev);


#endif /* _NGX_HTTP_USAGE_FILTER_H_INCLUDED_ */
