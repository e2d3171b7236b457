
/*
 * ack=redis, the request's side.  The event is checked and queued for
 * Redis, not stored (ngx_http_usage_store_hold()); the request then polls
 * the zone every few milliseconds for its fate: stored once Redis took
 * it (201, or 200 for a client id stored meanwhile), or withdrawn once
 * its deadline passed, or Redis refused it (503).  An instance whose
 * Redis is down answers 503 at once.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_ack.h"
#include "ngx_http_usage_request.h"
#include "ngx_http_usage_reply.h"
#include "ngx_http_usage_sync.h"
#include "ngx_http_usage_time.h"


/* how often a waiting POST looks at the zone */
#define NGX_HTTP_USAGE_ACK_POLL    2

/*
 * How long after its deadline a POST still waits for Redis's answer: a
 * batch that Redis took just before the deadline is answered within a
 * round trip, and one it ran after was refused.  A reply slower than
 * this is the one case of a 503 for an event Redis had
 * (usage_sync_ack_ambiguous_total).
 */
#define NGX_HTTP_USAGE_ACK_MARGIN  200


typedef struct {
    ngx_http_usage_zone_t          *zone;
    ngx_http_usage_record_t        *recs;
    ngx_uint_t                      n;
    ngx_http_usage_batch_result_t   res;
    ngx_http_usage_ack_answer_pt    answer;
} ngx_http_usage_ack_t;


static void ngx_http_usage_ack_poll(ngx_http_request_t *r);


void
ngx_http_usage_ack_post(ngx_http_request_t *r, ngx_http_usage_zone_t *zone,
    ngx_http_usage_record_t *recs, ngx_uint_t n,
    ngx_http_usage_ack_answer_pt answer)
{
    ngx_int_t                      rc;
    ngx_http_usage_ack_t          *ack;
    ngx_http_usage_ctx_t          *ctx;
    ngx_http_usage_sync_status_t   st;

    ctx = ngx_http_usage_get_ctx(r);
    ack = ngx_pcalloc(r->pool, sizeof(ngx_http_usage_ack_t));

    if (ctx == NULL || ack == NULL) {
        answer(r, recs, n, NULL, NGX_ERROR);
        return;
    }

    /* Redis down: no wait would end otherwise */
    if (ngx_http_usage_sync_status(zone, &st) != NGX_OK
        || (st.state != NGX_HTTP_USAGE_SYNC_OK
            && st.state != NGX_HTTP_USAGE_SYNC_BOOTSTRAPPING))
    {
        answer(r, recs, n, &ack->res, NGX_HTTP_USAGE_UNSYNCED);
        return;
    }

    rc = ngx_http_usage_store_hold(zone, r->pool, recs, n,
                                   ngx_http_usage_now(), &ack->res);

    if (rc != NGX_OK) {
        answer(r, recs, n, &ack->res,
               (rc == NGX_BUSY) ? NGX_HTTP_USAGE_UNSYNCED : rc);
        return;
    }

    ack->zone = zone;
    ack->recs = recs;
    ack->n = n;
    ack->answer = answer;
    ctx->ack = ack;

    /* the request body's reference keeps the request until answer() */
    ngx_http_usage_wait(r, ngx_http_usage_ack_poll, NGX_HTTP_USAGE_ACK_POLL);
}


static void
ngx_http_usage_ack_poll(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_http_usage_ack_t  *ack;

    if (!ngx_http_usage_wait_due(r)) {
        return;
    }

    ack = ngx_http_usage_get_ctx(r)->ack;

    rc = ngx_http_usage_store_held(ack->zone, r->pool, ack->recs, ack->n,
                                   ngx_http_usage_now(),
                                   NGX_HTTP_USAGE_ACK_MARGIN, &ack->res);

    if (rc == NGX_AGAIN) {
        ngx_http_usage_wait_again(r, NGX_HTTP_USAGE_ACK_POLL);
        return;
    }

    ngx_http_usage_wait_end(r);

    ack->answer(r, ack->recs, ack->n, &ack->res,
                (rc == NGX_DECLINED) ? NGX_HTTP_USAGE_UNSYNCED : rc);
}


/* ack=redis's own refusals, for one event or a batch's */

ngx_int_t
ngx_http_usage_ack_error(ngx_http_request_t *r, ngx_int_t rc,
    ngx_uint_t batch)
{
    ngx_str_t  msg;

    if (rc == NGX_HTTP_USAGE_UNSYNCED) {
        if (batch) {
            ngx_str_set(&msg, "Redis did not take the events in time "
                        "(usage_sync ack=redis): nothing of the batch was "
                        "stored; send it again, with ids to make the retry "
                        "safe");
        } else {
            ngx_str_set(&msg, "Redis did not take the event in time "
                        "(usage_sync ack=redis): it was not stored; send it "
                        "again, with an id to make the retry safe");
        }

        return ngx_http_usage_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "SYNC_UNAVAILABLE", &msg);
    }

    if (rc == NGX_HTTP_USAGE_HELD_TOO_LARGE) {
        if (batch) {
            ngx_str_set(&msg, "With usage_sync ack=redis the events of a "
                        "batch take at most 1 MB in the fleet's stream: send "
                        "fewer events at a time");
        } else {
            ngx_str_set(&msg, "With usage_sync ack=redis an event takes at "
                        "most 1 MB in the fleet's stream");
        }

        return ngx_http_usage_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "PAYLOAD_TOO_LARGE", &msg);
    }

    return NGX_DECLINED;
}
