
/*
 * GET /v1/entities: the entities ranked by their usage.
 */


#ifndef _NGX_HTTP_USAGE_ENTITIES_H_INCLUDED_
#define _NGX_HTTP_USAGE_ENTITIES_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_store.h"


ngx_int_t ngx_http_usage_entities(ngx_http_request_t *r,
    ngx_http_usage_zone_t *zone, ngx_http_usage_sipkey_t *sipkey);


#endif /* _NGX_HTTP_USAGE_ENTITIES_H_INCLUDED_ */
