
/*
 * usage_sync ack=redis (docs/FLEET.md): POST /v1/events is answered 201
 * only once Redis has the event, so that an acknowledged event outlives
 * the instance that took it; past ack_timeout= it is a JSON 503
 * SYNC_UNAVAILABLE, and the event is stored nowhere.  The request waits
 * on a timer of its connection, as a read with a position does.
 */


#ifndef _NGX_HTTP_USAGE_ACK_H_INCLUDED_
#define _NGX_HTTP_USAGE_ACK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_store.h"


/* the answer ack gives for an event Redis did not take: a 503 */
#define NGX_HTTP_USAGE_UNSYNCED  100

/* finalizes the request with the answer for rc: an insert's code, or
 * NGX_HTTP_USAGE_UNSYNCED */
typedef void (*ngx_http_usage_ack_answer_pt)(ngx_http_request_t *r,
    ngx_http_usage_record_t *rec, ngx_int_t rc);


/* holds rec for Redis; answer() is called once its fate is known */
void ngx_http_usage_ack_post(ngx_http_request_t *r,
    ngx_http_usage_zone_t *zone, ngx_http_usage_record_t *rec,
    ngx_http_usage_ack_answer_pt answer);


#endif /* _NGX_HTTP_USAGE_ACK_H_INCLUDED_ */
