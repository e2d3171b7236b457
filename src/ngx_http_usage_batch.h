
/*
 * POST /v1/events/batch: the body handler, called by the API's router
 * once nginx has read the request body.
 */


#ifndef _NGX_HTTP_USAGE_BATCH_H_INCLUDED_
#define _NGX_HTTP_USAGE_BATCH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


void ngx_http_usage_batch_body(ngx_http_request_t *r);


#endif /* _NGX_HTTP_USAGE_BATCH_H_INCLUDED_ */
