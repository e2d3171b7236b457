
/*
 * X-Usage-Position.  A position names one event of one origin; an
 * instance has reached it once the event is in its zone (its own events
 * are there from their insert, the others' once applied).  A read that
 * has to wait polls the zone (ngx_http_usage_wait()), and the answer is
 * computed only when the wait is over.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_position.h"
#include "ngx_http_usage_request.h"
#include "ngx_http_usage_reply.h"
#include "ngx_http_usage_wire.h"


/* how often a waiting read looks at the zone */
#define NGX_HTTP_USAGE_POSITION_POLL  2

#define NGX_HTTP_USAGE_POSITION_LEN   (NGX_HTTP_USAGE_ORIGIN_HEX + 1          \
                                       + NGX_INT64_LEN)


typedef struct {
    ngx_http_usage_zone_t       *zone;
    uint64_t                     origin;
    uint64_t                     seq;
    ngx_msec_t                   deadline;
    ngx_http_handler_pt          resume;
} ngx_http_usage_position_t;


static ngx_int_t ngx_http_usage_position_parse(ngx_str_t *value,
    uint64_t *origin, uint64_t *seq);
static void ngx_http_usage_position_poll(ngx_http_request_t *r);
static ngx_int_t ngx_http_usage_position_reached(ngx_http_request_t *r,
    ngx_uint_t reached);


ngx_int_t
ngx_http_usage_position_answer(ngx_http_request_t *r,
    ngx_http_usage_record_t *rec)
{
    u_char     *p;
    ngx_str_t   value;

    if (rec->seq == 0) {
        return NGX_OK;              /* no sync, or not queued */
    }

    p = ngx_pnalloc(r->pool, NGX_HTTP_USAGE_POSITION_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    p = ngx_http_usage_origin_hex(p, rec->origin);
    value.len = ngx_sprintf(p, ":%uL", rec->seq) - value.data;

    return ngx_http_usage_add_header_lit(r, "X-Usage-Position", &value);
}


ngx_int_t
ngx_http_usage_position_wait(ngx_http_request_t *r,
    ngx_http_usage_zone_t *zone, ngx_http_handler_pt resume)
{
    ngx_table_elt_t            *h;
    ngx_http_usage_ctx_t       *ctx;
    ngx_http_usage_position_t  *pos;

    ctx = ngx_http_usage_get_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    if (ctx->position) {
        return NGX_OK;              /* the wait is over: resumed */
    }

    h = ngx_http_usage_find_header(r, (u_char *) "X-Usage-Position",
                                   sizeof("X-Usage-Position") - 1);

    /* without usage_sync no position is ever given: nothing to wait for */
    if (h == NULL || zone->sync == NULL) {
        return NGX_OK;
    }

    pos = ngx_pcalloc(r->pool, sizeof(ngx_http_usage_position_t));
    if (pos == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_usage_position_parse(&h->value, &pos->origin, &pos->seq)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ctx->position = pos;

    if (ngx_http_usage_store_reached(zone, pos->origin, pos->seq)) {
        return (ngx_http_usage_position_reached(r, 1) == NGX_OK) ? NGX_OK
                                                                 : NGX_ERROR;
    }

    pos->zone = zone;
    pos->resume = resume;
    pos->deadline = ngx_current_msec + NGX_HTTP_USAGE_POSITION_WAIT;

    /* NGX_DONE takes this reference back; the final answer is resume()'s */
    r->main->count++;

    ngx_http_usage_wait(r, ngx_http_usage_position_poll,
                        NGX_HTTP_USAGE_POSITION_POLL);

    return NGX_DONE;
}


ngx_int_t
ngx_http_usage_position_invalid(ngx_http_request_t *r)
{
    ngx_str_t  msg;

    ngx_str_set(&msg, "X-Usage-Position must be a position as a POST "
                "answers it: <16 hex digits>:<sequence number>");

    return ngx_http_usage_send_error(r, NGX_HTTP_BAD_REQUEST,
                                     "INVALID_POSITION", &msg);
}


static void
ngx_http_usage_position_poll(ngx_http_request_t *r)
{
    ngx_uint_t                  reached;
    ngx_http_usage_ctx_t       *ctx;
    ngx_http_usage_position_t  *pos;

    if (!ngx_http_usage_wait_due(r)) {
        return;
    }

    ctx = ngx_http_usage_get_ctx(r);
    pos = ctx->position;

    reached = ngx_http_usage_store_reached(pos->zone, pos->origin, pos->seq);

    if (!reached && (ngx_msec_int_t) (pos->deadline - ngx_current_msec) > 0) {
        ngx_http_usage_wait_again(r, NGX_HTTP_USAGE_POSITION_POLL);
        return;
    }

    ngx_http_usage_wait_end(r);

    if (ngx_http_usage_position_reached(r, reached) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_finalize_request(r, pos->resume(r));
}


static ngx_int_t
ngx_http_usage_position_reached(ngx_http_request_t *r, ngx_uint_t reached)
{
    ngx_str_t  value;

    if (reached) {
        ngx_str_set(&value, "true");

    } else {
        ngx_str_set(&value, "false");
    }

    return ngx_http_usage_add_header_lit(r, "X-Usage-Position-Reached",
                                         &value);
}


/* <16 lower-case hex digits>:<decimal seq, not 0> */

static ngx_int_t
ngx_http_usage_position_parse(ngx_str_t *value, uint64_t *origin,
    uint64_t *seq)
{
    u_char  *p, *end;

    if (value->len < NGX_HTTP_USAGE_ORIGIN_HEX + 2
        || value->len > NGX_HTTP_USAGE_ORIGIN_HEX + 1 + 19
        || value->data[NGX_HTTP_USAGE_ORIGIN_HEX] != ':'
        || ngx_http_usage_origin_parse(value->data, NGX_HTTP_USAGE_ORIGIN_HEX,
                                       origin)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    *seq = 0;
    end = value->data + value->len;

    /* 19 digits at most: no overflow */
    for (p = value->data + NGX_HTTP_USAGE_ORIGIN_HEX + 1; p < end; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        *seq = *seq * 10 + (*p - '0');
    }

    return (*seq == 0) ? NGX_ERROR : NGX_OK;
}
