
/*
 * Read-your-writes across a fleet (docs/FLEET.md): a POST answers with
 * its event's position, X-Usage-Position: <origin>:<seq>, and a GET that
 * carries one waits, at most 500 ms, until its instance holds the event,
 * then answers with X-Usage-Position-Reached: true or false.
 */


#ifndef _NGX_HTTP_USAGE_POSITION_H_INCLUDED_
#define _NGX_HTTP_USAGE_POSITION_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_store.h"


/* the longest a read waits for a position */
#define NGX_HTTP_USAGE_POSITION_WAIT  500


/* the header of a 201: rec was given a seq by the insert */
ngx_int_t ngx_http_usage_position_answer(ngx_http_request_t *r,
    ngx_http_usage_record_t *rec);

/*
 * NGX_OK: answer now; NGX_DONE: the request waits, and resume() answers
 * it later; NGX_DECLINED: the position is malformed, the answer is
 * ngx_http_usage_position_invalid()'s; NGX_ERROR.
 */
ngx_int_t ngx_http_usage_position_wait(ngx_http_request_t *r,
    ngx_http_usage_zone_t *zone, ngx_http_handler_pt resume);
ngx_int_t ngx_http_usage_position_invalid(ngx_http_request_t *r);


#endif /* _NGX_HTTP_USAGE_POSITION_H_INCLUDED_ */
