
/*
 * POST /v1/events/batch: up to 1000 events in one request, each by the
 * rules of a single POST, stored all together or not at all.  Validation
 * names every bad event by its index and stores nothing; storing takes the
 * zone lock once for the whole batch (ngx_http_usage_store_insert_batch()),
 * and an event that cannot be stored takes the others back with it.  The
 * request is one call of the API: self-tracking records one event for it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_store.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_body.h"
#include "ngx_http_usage_id.h"
#include "ngx_http_usage_time.h"
#include "ngx_http_usage_request.h"
#include "ngx_http_usage_reply.h"
#include "ngx_http_usage_scope.h"
#include "ngx_http_usage_position.h"
#include "ngx_http_usage_batch.h"
#include "ngx_http_usage_ack.h"


static ngx_int_t ngx_http_usage_batch_parse(ngx_http_request_t *r,
    ngx_http_usage_zone_t *zone, ngx_http_usage_batch_t *batch,
    int64_t now, ngx_int_t *answer);
static ngx_int_t ngx_http_usage_batch_invalid(ngx_http_request_t *r,
    ngx_http_usage_batch_t *batch);
static ngx_int_t ngx_http_usage_batch_scope(ngx_http_request_t *r,
    ngx_http_usage_batch_t *batch, ngx_int_t *answer);
static ngx_int_t ngx_http_usage_batch_refused(ngx_http_request_t *r,
    ngx_http_usage_zone_t *zone, ngx_int_t rc, ngx_uint_t index);
static ngx_int_t ngx_http_usage_batch_stored(ngx_http_request_t *r,
    ngx_http_usage_record_t *recs, ngx_uint_t n,
    ngx_http_usage_batch_result_t *res);
static void ngx_http_usage_batch_acked(ngx_http_request_t *r,
    ngx_http_usage_record_t *recs, ngx_uint_t n,
    ngx_http_usage_batch_result_t *res, ngx_int_t rc);


void
ngx_http_usage_batch_body(ngx_http_request_t *r)
{
    int64_t                         now;
    ngx_int_t                       rc;
    ngx_uint_t                      i;
    ngx_http_usage_zone_t          *zone;
    ngx_http_usage_batch_t          batch;
    ngx_http_usage_loc_conf_t      *ulcf;
    ngx_http_usage_batch_result_t   res;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);
    zone = ulcf->api_zone->data;
    now = ngx_http_usage_now();

    if (ngx_http_usage_batch_parse(r, zone, &batch, now, &rc) != NGX_OK
        || ngx_http_usage_batch_scope(r, &batch, &rc) != NGX_OK)
    {
        ngx_http_finalize_request(r, rc);
        return;
    }

    for (i = 0; i < batch.n; i++) {
        ngx_http_usage_uuid_v4(batch.recs[i].uuid);
    }

    if (zone->ack_timeout) {
        ngx_http_usage_ack_post(r, zone, batch.recs, batch.n,
                                ngx_http_usage_batch_acked);
        return;
    }

    rc = ngx_http_usage_store_insert_batch(zone, r->pool, batch.recs,
                                           batch.n, now, &res);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r,
                     ngx_http_usage_batch_refused(r, zone, rc, res.failed));
        return;
    }

    ngx_http_finalize_request(r,
                              ngx_http_usage_batch_stored(r, batch.recs,
                                                          batch.n, &res));
}


/* ack=redis: Redis took the batch's events, or did not */

static void
ngx_http_usage_batch_acked(ngx_http_request_t *r,
    ngx_http_usage_record_t *recs, ngx_uint_t n,
    ngx_http_usage_batch_result_t *res, ngx_int_t rc)
{
    ngx_int_t                   answer;
    ngx_http_usage_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    if (rc == NGX_OK) {
        ngx_http_finalize_request(r,
                             ngx_http_usage_batch_stored(r, recs, n, res));
        return;
    }

    answer = ngx_http_usage_ack_error(r, rc, 1);

    if (answer != NGX_DECLINED) {
        ngx_http_finalize_request(r, answer);
        return;
    }

    ngx_http_finalize_request(r,
                    ngx_http_usage_batch_refused(r, ulcf->api_zone->data, rc,
                                                 res ? res->failed : n));
}


/*
 * The body, read and checked.  NGX_DECLINED: it was answered, and
 * *answer is for ngx_http_finalize_request().
 */

static ngx_int_t
ngx_http_usage_batch_parse(ngx_http_request_t *r,
    ngx_http_usage_zone_t *zone, ngx_http_usage_batch_t *batch, int64_t now,
    ngx_int_t *answer)
{
    ngx_int_t                   rc;
    ngx_str_t                   body;
    ngx_http_usage_limits_t     limits;
    ngx_http_usage_loc_conf_t  *ulcf;

    rc = ngx_http_usage_request_body(r, &body);

    if (rc == NGX_DECLINED) {
        *answer = ngx_http_usage_send_too_large(r);
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        *answer = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    limits.metadata_max_size = ulcf->metadata_max_size;
    limits.metadata_max_depth = ulcf->metadata_max_depth;
    limits.now = now;
    limits.retention = zone->retention;

    rc = ngx_http_usage_parse_batch(r->pool, body.data, body.len,
                                    ngx_http_usage_body_format(r), &limits,
                                    batch);

    if (rc == NGX_OK) {
        return NGX_OK;
    }

    if (rc != NGX_DECLINED) {
        *answer = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else if (batch->error.len) {
        *answer = ngx_http_usage_send_error(r, NGX_HTTP_BAD_REQUEST,
                                            "VALIDATION_ERROR",
                                            &batch->error);

    } else {
        *answer = ngx_http_usage_batch_invalid(r, batch);
    }

    return NGX_DECLINED;
}


/*
 * 400 VALIDATION_ERROR, "details": [{"index": i, "message": "..."}] for
 * every bad event, each message as a single POST of it would say
 */

static ngx_int_t
ngx_http_usage_batch_invalid(ngx_http_request_t *r,
    ngx_http_usage_batch_t *batch)
{
    u_char                        *p;
    size_t                         size;
    ngx_str_t                      msg, details;
    ngx_uint_t                     i;
    ngx_http_usage_out_t           out;
    ngx_http_usage_batch_error_t  *e;

    e = batch->errors.elts;
    size = 2;

    for (i = 0; i < batch->errors.nelts; i++) {
        size += 48 + e[i].message.len;
    }

    if (ngx_http_usage_out_init(&out, r->pool, size) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_usage_out_lit(&out, "[");

    for (i = 0; i < batch->errors.nelts; i++) {
        if (i) {
            ngx_http_usage_out_lit(&out, ",");
        }

        ngx_http_usage_out_lit(&out, "{\"index\":");
        ngx_http_usage_out_uint(&out, e[i].index);
        ngx_http_usage_out_lit(&out, ",\"message\":");
        ngx_http_usage_out_string(&out, e[i].message.data,
                                  e[i].message.len);
        ngx_http_usage_out_lit(&out, "}");
    }

    ngx_http_usage_out_lit(&out, "]");

    p = ngx_pnalloc(r->pool, 96 + 2 * NGX_INT_T_LEN);
    if (out.failed || p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    msg.data = p;
    msg.len = ngx_sprintf(p, "%ui of %ui events are invalid (the first: "
                          "index %ui); nothing was stored",
                          batch->errors.nelts, batch->n, e[0].index)
              - p;

    details.data = out.start;
    details.len = out.pos - out.start;

    return ngx_http_usage_send_error_details(r, NGX_HTTP_BAD_REQUEST,
                                             "VALIDATION_ERROR", &msg,
                                             &details);
}


/* a key scoped to an entity may send events of that entity only; as
 * batch_parse() */

static ngx_int_t
ngx_http_usage_batch_scope(ngx_http_request_t *r,
    ngx_http_usage_batch_t *batch, ngx_int_t *answer)
{
    ngx_int_t                 rc;
    ngx_str_t                 scope;
    ngx_uint_t                i;
    ngx_http_usage_record_t  *rec;

    rc = ngx_http_usage_scope(r, &scope);

    if (rc == NGX_ERROR) {
        *answer = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return NGX_OK;              /* not scoped */
    }

    for (i = 0; i < batch->n; i++) {
        rec = &batch->recs[i];

        if (rec->entity.len != scope.len
            || ngx_strncmp(rec->entity.data, scope.data, scope.len) != 0)
        {
            *answer = ngx_http_usage_scope_forbidden(r, &scope,
                                                NGX_HTTP_USAGE_SCOPE_RECORD);
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* nothing of the batch was stored: why, naming the event that was not */

static ngx_int_t
ngx_http_usage_batch_refused(ngx_http_request_t *r,
    ngx_http_usage_zone_t *zone, ngx_int_t rc, ngx_uint_t index)
{
    u_char     *p;
    ngx_str_t   msg, prefix;

    p = ngx_pnalloc(r->pool, 160 + NGX_INT_T_LEN + NGX_SIZE_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (rc) {

    case NGX_HTTP_USAGE_LIMIT_TYPES:
    case NGX_HTTP_USAGE_LIMIT_SHARE:
        prefix.data = p;
        prefix.len = ngx_sprintf(p, "Nothing of the batch was stored: event "
                                 "%ui: ", index)
                     - p;

        return ngx_http_usage_send_entity_limited(r,
                                           rc == NGX_HTTP_USAGE_LIMIT_TYPES,
                                           zone->entity_types,
                                           zone->entity_share, &prefix);

    case NGX_HTTP_USAGE_TOO_LARGE:
        msg.data = p;
        msg.len = ngx_sprintf(p, "The batch takes more than half of the "
                              "usage store's raw event log: send fewer "
                              "events at a time")
                  - p;

        return ngx_http_usage_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "PAYLOAD_TOO_LARGE", &msg);

    case NGX_DECLINED:
        msg.data = p;
        msg.len = ngx_sprintf(p, "The usage store cannot hold event %ui of "
                              "the batch; nothing of the batch was stored",
                              index)
                  - p;

        return ngx_http_usage_send_error(r, NGX_HTTP_INSUFFICIENT_STORAGE,
                                         "STORE_FULL", &msg);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


/*
 * 201, or 200 if every event was a duplicate: {"stored": n,
 * "duplicates": m, "events": [{"id", "createdAt", "duplicate"}, ...]} in
 * the order sent; X-Usage-Position is the last stored event's.
 */

static ngx_int_t
ngx_http_usage_batch_stored(ngx_http_request_t *r,
    ngx_http_usage_record_t *recs, ngx_uint_t n,
    ngx_http_usage_batch_result_t *res)
{
    u_char                   *p, uuid[sizeof("{\"id\":\"\"") + 36];
    ngx_uint_t                i;
    ngx_http_usage_out_t      out;
    ngx_http_usage_record_t  *rec;

    for (i = n; i--; /* void */) {
        if (recs[i].seq) {
            if (ngx_http_usage_position_answer(r, &recs[i]) != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            break;
        }
    }

    if (ngx_http_usage_reply_begin(r, &out, 1, 64 + n * 96)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_usage_out_lit(&out, "{\"stored\":");
    ngx_http_usage_out_uint(&out, res->stored);
    ngx_http_usage_out_lit(&out, ",\"duplicates\":");
    ngx_http_usage_out_uint(&out, res->duplicates);
    ngx_http_usage_out_lit(&out, ",\"events\":[");

    for (i = 0; i < n; i++) {
        rec = &recs[i];

        if (i) {
            ngx_http_usage_out_lit(&out, ",");
        }

        if (rec->id.len) {
            ngx_http_usage_out_lit(&out, "{\"id\":");
            ngx_http_usage_out_string(&out, rec->id.data, rec->id.len);

        } else {
            p = ngx_cpymem(uuid, "{\"id\":\"", sizeof("{\"id\":\"") - 1);
            p = ngx_http_usage_uuid_format(p, rec->uuid);
            *p++ = '"';
            ngx_http_usage_out_raw(&out, uuid, p - uuid);
        }

        ngx_http_usage_out_lit(&out, ",\"createdAt\":");

        if (rec->duplicate && rec->evicted) {
            ngx_http_usage_out_lit(&out, "null");

        } else {
            ngx_http_usage_out_uint(&out, (uint64_t) rec->created);
        }

        if (rec->duplicate) {
            ngx_http_usage_out_lit(&out, ",\"duplicate\":true}");

        } else {
            ngx_http_usage_out_lit(&out, ",\"duplicate\":false}");
        }
    }

    ngx_http_usage_out_lit(&out, "]}}");

    return ngx_http_usage_send_json(r, res->stored ? NGX_HTTP_CREATED
                                                   : NGX_HTTP_OK, &out);
}
