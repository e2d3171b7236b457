
/*
 * usage_sync ack=redis (docs/FLEET.md): a POST of events (one, or a
 * batch) is answered only once Redis has them, so that an acknowledged
 * event outlives the instance that took it; past ack_timeout= it is a
 * JSON 503 SYNC_UNAVAILABLE, and the events are stored nowhere.  The
 * request waits on a timer of its connection, as a read with a position
 * does.
 */


#ifndef _NGX_HTTP_USAGE_ACK_H_INCLUDED_
#define _NGX_HTTP_USAGE_ACK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_store.h"


/* the answer for events Redis did not take: a 503 */
#define NGX_HTTP_USAGE_UNSYNCED  100

/*
 * Finalizes the request with the answer for rc: NGX_OK (res counts what
 * was stored and what was a duplicate, recs[i].duplicate says which), a
 * code of ngx_http_usage_store_hold() (res->failed names the event),
 * NGX_HTTP_USAGE_UNSYNCED, or NGX_ERROR.
 */
typedef void (*ngx_http_usage_ack_answer_pt)(ngx_http_request_t *r,
    ngx_http_usage_record_t *recs, ngx_uint_t n,
    ngx_http_usage_batch_result_t *res, ngx_int_t rc);


/* holds recs for Redis; answer() is called once their fate is known */
void ngx_http_usage_ack_post(ngx_http_request_t *r,
    ngx_http_usage_zone_t *zone, ngx_http_usage_record_t *recs,
    ngx_uint_t n, ngx_http_usage_ack_answer_pt answer);


/* the answer to rc if it is one of ack=redis's refusals (a 503, or the
 * 413 of events past one stream entry), else NGX_DECLINED */
ngx_int_t ngx_http_usage_ack_error(ngx_http_request_t *r, ngx_int_t rc,
    ngx_uint_t batch);


#endif /* _NGX_HTTP_USAGE_ACK_H_INCLUDED_ */
