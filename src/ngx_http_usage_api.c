
/*
 * The HTTP API's handlers: one per route, each validating its request,
 * calling the store and rendering the answer.  Routes are matched by
 * ngx_http_usage_route.c, answers sent by ngx_http_usage_reply.c.  The
 * store copies results out under its lock; everything here runs without.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_store.h"
#include "ngx_http_usage_query.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_batch.h"
#include "ngx_http_usage_body.h"
#include "ngx_http_usage_id.h"
#include "ngx_http_usage_number.h"
#include "ngx_http_usage_text.h"
#include "ngx_http_usage_time.h"
#include "ngx_http_usage_uri.h"
#include "ngx_http_usage_request.h"
#include "ngx_http_usage_route.h"
#include "ngx_http_usage_reply.h"
#include "ngx_http_usage_drain.h"
#include "ngx_http_usage_scope.h"
#include "ngx_http_usage_sync.h"
#include "ngx_http_usage_position.h"
#include "ngx_http_usage_ack.h"
#include "ngx_http_usage_wire.h"
#include "ngx_http_usage_cursor.h"
#include "ngx_http_usage_entities.h"
#include "ngx_http_usage_assets.h"
#include "ngx_http_usage_static.h"
#include "ngx_http_usage_api.h"


/* the entity id's three rules, and since, until and interval */
#define NGX_HTTP_USAGE_RANGE_ERRORS  6


/* the arguments of a summary or a history, as parsed */
typedef struct {
    ngx_http_usage_range_t       q;
    ngx_str_t                    since;        /* as given, or null */
    ngx_str_t                    until;
    ngx_str_t                    interval;     /* history: as given */
    ngx_str_t                    scope;        /* the entity in scope */
    ngx_str_t                    errors[NGX_HTTP_USAGE_RANGE_ERRORS];
    ngx_uint_t                   nerrors;
    ngx_http_usage_zone_t       *zone;
    int64_t                      now;
} ngx_http_usage_range_args_t;


static ngx_int_t ngx_http_usage_invalid_path(ngx_http_request_t *r);
static ngx_int_t ngx_http_usage_preflight(ngx_http_request_t *r);
static ngx_int_t ngx_http_usage_not_allowed(ngx_http_request_t *r);
static ngx_int_t ngx_http_usage_not_found(ngx_http_request_t *r);
static ngx_int_t ngx_http_usage_post_event(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt body_handler);
static void ngx_http_usage_post_event_body(ngx_http_request_t *r);
static void ngx_http_usage_post_acked(ngx_http_request_t *r,
    ngx_http_usage_record_t *recs, ngx_uint_t n,
    ngx_http_usage_batch_result_t *res, ngx_int_t rc);
static void ngx_http_usage_post_answer(ngx_http_request_t *r,
    ngx_http_usage_record_t *rec, ngx_int_t rc);
static ngx_int_t ngx_http_usage_json_content_type(ngx_http_request_t *r);
static ngx_int_t ngx_http_usage_list_events(ngx_http_request_t *r);
static ngx_int_t ngx_http_usage_cursor_arg(ngx_http_request_t *r,
    ngx_http_usage_list_t *q, ngx_http_usage_list_key_t *after,
    ngx_str_t *error);
static ngx_http_usage_sipkey_t *ngx_http_usage_cursor_key(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_usage_out_cursor_page(ngx_http_request_t *r,
    ngx_http_usage_out_t *out, ngx_http_usage_list_t *q);
static void ngx_http_usage_out_offset_page(ngx_http_usage_out_t *out,
    ngx_http_usage_list_t *q);
static ngx_int_t ngx_http_usage_filter_arg(ngx_http_request_t *r,
    const char *name, ngx_str_t *value, ngx_str_t **filter);
static ngx_int_t ngx_http_usage_number_arg(ngx_http_request_t *r,
    const char *name, ngx_uint_t max, ngx_uint_t *value);
static ngx_int_t ngx_http_usage_range_args(ngx_http_request_t *r,
    ngx_http_usage_route_t *rt, ngx_uint_t history,
    ngx_http_usage_range_args_t *a);
static ngx_int_t ngx_http_usage_range_refused(ngx_http_request_t *r,
    ngx_int_t rc, ngx_http_usage_range_args_t *a);
static ngx_int_t ngx_http_usage_entity_segment(ngx_http_request_t *r,
    ngx_http_usage_route_t *rt, ngx_http_usage_range_args_t *a);
static ngx_int_t ngx_http_usage_range_time(ngx_http_request_t *r,
    const char *name, const char *error, ngx_http_usage_range_args_t *a,
    ngx_str_t *value, int64_t *ms);
static ngx_int_t ngx_http_usage_interval_arg(ngx_http_request_t *r,
    ngx_http_usage_range_args_t *a);
static void ngx_http_usage_range_error(ngx_http_usage_range_args_t *a,
    const char *msg);
static ngx_int_t ngx_http_usage_summary(ngx_http_request_t *r,
    ngx_http_usage_route_t *rt);
static ngx_int_t ngx_http_usage_history(ngx_http_request_t *r,
    ngx_http_usage_route_t *rt);
static size_t ngx_http_usage_range_size(ngx_http_usage_range_args_t *a);
static void ngx_http_usage_out_range_end(ngx_http_usage_out_t *out,
    ngx_http_usage_range_args_t *a);
static ngx_int_t ngx_http_usage_store_wide(ngx_http_request_t *r,
    ngx_uint_t stats);
static ngx_int_t ngx_http_usage_stats(ngx_http_request_t *r);
static ngx_int_t ngx_http_usage_health(ngx_http_request_t *r);
static ngx_int_t ngx_http_usage_ready(ngx_http_request_t *r);
static ngx_int_t ngx_http_usage_info(ngx_http_request_t *r);
static void ngx_http_usage_out_sync(ngx_http_usage_out_t *out,
    ngx_http_usage_zone_t *zone);
static ngx_int_t ngx_http_usage_root(ngx_http_request_t *r,
    ngx_uint_t docs);
static ngx_int_t ngx_http_usage_docs(ngx_http_request_t *r);
static void ngx_http_usage_out_uptime(ngx_http_usage_out_t *out,
    int64_t ms);
static void ngx_http_usage_out_totals(ngx_http_usage_out_t *out,
    ngx_http_usage_stats_t *st);


#define ngx_http_usage_zone_of(r)                                            \
    ((ngx_http_usage_zone_t *)                                               \
        ((ngx_http_usage_loc_conf_t *)                                       \
            ngx_http_get_module_loc_conf(r, ngx_http_usage_module))          \
        ->api_zone->data)


ngx_int_t
ngx_http_usage_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_uint_t                  read;
    ngx_http_usage_ctx_t       *ctx;
    ngx_http_usage_route_t      rt;
    ngx_http_usage_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    if (ulcf->api_zone == NULL) {
        /* a nested location that kept the handler but not the zone */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "usage_api handler without a zone in this location");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_usage_route(r, &rt);

    /* the log phase asks again whether the request is a probe */
    ctx = ngx_http_usage_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->routed = 1;
    ctx->untracked = (rt.route == NGX_HTTP_USAGE_ROUTE_HEALTH
                      || rt.route == NGX_HTTP_USAGE_ROUTE_READY);

    if (rt.dots) {
        return ngx_http_usage_invalid_path(r);
    }

    if (r->method == NGX_HTTP_OPTIONS) {
        return ngx_http_usage_preflight(r);
    }

    if (rt.route == NGX_HTTP_USAGE_ROUTE_NONE) {
        return ngx_http_usage_not_found(r);
    }

    if (rt.route == NGX_HTTP_USAGE_ROUTE_EVENTS
        && r->method == NGX_HTTP_POST)
    {
        return ngx_http_usage_post_event(r, ngx_http_usage_post_event_body);
    }

    if (rt.route == NGX_HTTP_USAGE_ROUTE_BATCH
        && r->method == NGX_HTTP_POST)
    {
        return ngx_http_usage_post_event(r, ngx_http_usage_batch_body);
    }

    read = r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD);

    if (!read || rt.route == NGX_HTTP_USAGE_ROUTE_BATCH) {
        return ngx_http_usage_not_allowed(r);
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    /* a read after a write through another instance waits for it */
    if (rt.route >= NGX_HTTP_USAGE_ROUTE_INFO) {
        rc = ngx_http_usage_position_wait(r, ngx_http_usage_zone_of(r),
                                          ngx_http_usage_api_handler);

        if (rc == NGX_DECLINED) {
            return ngx_http_usage_position_invalid(r);
        }

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_DONE) {
            return NGX_DONE;
        }
    }

    switch (rt.route) {

    case NGX_HTTP_USAGE_ROUTE_ROOT:
        return ngx_http_usage_root(r, 0);

    case NGX_HTTP_USAGE_ROUTE_DOCS:
        return ngx_http_usage_docs(r);

    case NGX_HTTP_USAGE_ROUTE_OPENAPI:
        return ngx_http_usage_send_asset(r,
                                         NGX_HTTP_USAGE_ASSET_OPENAPI_JSON);

    case NGX_HTTP_USAGE_ROUTE_DASHBOARD:
        return ngx_http_usage_send_asset(r,
                                         NGX_HTTP_USAGE_ASSET_DASHBOARD_HTML);

    case NGX_HTTP_USAGE_ROUTE_HEALTH:
        return ngx_http_usage_health(r);

    case NGX_HTTP_USAGE_ROUTE_READY:
        return ngx_http_usage_ready(r);

    case NGX_HTTP_USAGE_ROUTE_INFO:
        return ngx_http_usage_store_wide(r, 0);

    case NGX_HTTP_USAGE_ROUTE_EVENTS:
        return ngx_http_usage_list_events(r);

    case NGX_HTTP_USAGE_ROUTE_STATS:
        return ngx_http_usage_store_wide(r, 1);

    case NGX_HTTP_USAGE_ROUTE_ENTITIES:
        return ngx_http_usage_entities(r, ngx_http_usage_zone_of(r),
                                       ngx_http_usage_cursor_key(r));

    case NGX_HTTP_USAGE_ROUTE_SUMMARY:
        return ngx_http_usage_summary(r, &rt);

    default: /* NGX_HTTP_USAGE_ROUTE_HISTORY */
        return ngx_http_usage_history(r, &rt);
    }
}


static ngx_int_t
ngx_http_usage_invalid_path(ngx_http_request_t *r)
{
    ngx_str_t  msg;

    ngx_str_set(&msg, "Path segments \".\" and \"..\" are not allowed");

    return ngx_http_usage_send_error(r, NGX_HTTP_BAD_REQUEST, "INVALID_PATH",
                                     &msg);
}


static ngx_int_t
ngx_http_usage_preflight(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_str_t              value;
    ngx_table_elt_t       *h;
    ngx_http_usage_ctx_t  *ctx;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    ctx = ngx_http_usage_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&value, "GET,POST,OPTIONS");
    if (ngx_http_usage_add_header_lit(r, "Access-Control-Allow-Methods", &value)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_http_usage_find_header(r,
                               (u_char *) "Access-Control-Request-Headers",
                               sizeof("Access-Control-Request-Headers") - 1);

    if (h) {
        if (ngx_http_usage_add_header_lit(r, "Access-Control-Allow-Headers",
                                          &h->value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_str_set(&value, "Access-Control-Request-Headers");
        if (ngx_http_usage_add_header_lit(r, "Vary", &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ngx_str_set(&value, NGX_HTTP_USAGE_CORS_MAX_AGE);
    if (ngx_http_usage_add_header_lit(r, "Access-Control-Max-Age", &value)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* set last: a failure above must still become the JSON 500 */
    ctx->own_body = 1;

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}


static ngx_int_t
ngx_http_usage_not_allowed(ngx_http_request_t *r)
{
    ngx_str_t  msg;

    if (ngx_http_usage_not_allowed_message(r, &msg) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_usage_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                     "METHOD_NOT_ALLOWED", &msg);
}


static ngx_int_t
ngx_http_usage_not_found(ngx_http_request_t *r)
{
    u_char     *p;
    ngx_str_t   msg, path;

    if (ngx_http_usage_request_path(r, &path) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, r->method_name.len + path.len + 32);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    msg.data = p;
    msg.len = ngx_sprintf(p, "Route %V %V not found", &r->method_name, &path)
              - p;

    return ngx_http_usage_send_error(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND", &msg);
}


/* the checks of a POST's headers, then its body to body_handler */

static ngx_int_t
ngx_http_usage_post_event(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt body_handler)
{
    ngx_int_t         rc;
    ngx_str_t         msg;
    ngx_table_elt_t  *h;

    if ((r->headers_in.content_length_n > 0 || r->headers_in.chunked)
        && ngx_http_usage_json_content_type(r) != NGX_OK)
    {
        ngx_str_set(&msg, "Content-Type must be application/json");

        return ngx_http_usage_send_error(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                         "UNSUPPORTED_MEDIA_TYPE", &msg);
    }

    /* compressed bodies are not inflated: say so rather than "malformed" */
    h = ngx_http_usage_find_header(r, (u_char *) "Content-Encoding",
                                   sizeof("Content-Encoding") - 1);

    if (h && !(h->value.len == 8
               && ngx_strncasecmp(h->value.data, (u_char *) "identity", 8)
                  == 0))
    {
        ngx_str_set(&msg, "Content-Encoding is not supported: send the "
                          "body uncompressed");

        return ngx_http_usage_send_error(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                         "UNSUPPORTED_MEDIA_TYPE", &msg);
    }

    if (r->headers_in.content_length_n > ngx_http_usage_body_limit(r)) {
        return ngx_http_usage_send_too_large(r);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        /* e.g. 413: the filter turns nginx's page into the JSON envelope */
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_usage_post_event_body(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_uint_t                  format;
    ngx_str_t                   body, error, scope;
    ngx_http_usage_zone_t      *zone;
    ngx_http_usage_limits_t     limits;
    ngx_http_usage_record_t     rec, *held;
    ngx_http_usage_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);
    zone = ulcf->api_zone->data;

    rc = ngx_http_usage_request_body(r, &body);

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(r, ngx_http_usage_send_too_large(r));
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    limits.metadata_max_size = ulcf->metadata_max_size;
    limits.metadata_max_depth = ulcf->metadata_max_depth;
    limits.now = ngx_http_usage_now();
    limits.retention = zone->retention;

    format = ngx_http_usage_body_format(r);

    if (format == NGX_HTTP_USAGE_BODY_CLOUDEVENTS) {
        /* a batch, whichever path it was sent to */
        ngx_http_usage_batch_body(r);
        return;
    }

    rc = (format == NGX_HTTP_USAGE_BODY_CLOUDEVENT)
         ? ngx_http_usage_parse_cloudevent(r->pool, body.data, body.len,
                                           &limits, &rec, &error)
         : ngx_http_usage_parse_event(r->pool, body.data, body.len, &limits,
                                      &rec, &error);

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(r,
                             ngx_http_usage_bad_request(r, &error, 1));
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_http_usage_scope(r, &scope);

    if (rc == NGX_OK
        && (rec.entity.len != scope.len
            || ngx_strncmp(rec.entity.data, scope.data, scope.len) != 0))
    {
        ngx_http_finalize_request(r,
                        ngx_http_usage_scope_forbidden(r, &scope,
                                                 NGX_HTTP_USAGE_SCOPE_RECORD));
        return;
    }

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_usage_uuid_v4(rec.uuid);
    rec.evicted = 0;
    rec.entity_hash = 0;
    rec.type_hash = 0;
    rec.origin = 0;
    rec.seq = 0;

    if (zone->ack_timeout) {
        held = ngx_palloc(r->pool, sizeof(ngx_http_usage_record_t));
        if (held == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        *held = rec;
        ngx_http_usage_ack_post(r, zone, held, 1, ngx_http_usage_post_acked);
        return;
    }

    rc = ngx_http_usage_store_insert(zone, r->pool, &rec, limits.now);

    ngx_http_usage_post_answer(r, &rec, rc);
}


/* ack=redis: Redis took the event, or did not */

static void
ngx_http_usage_post_acked(ngx_http_request_t *r,
    ngx_http_usage_record_t *recs, ngx_uint_t n,
    ngx_http_usage_batch_result_t *res, ngx_int_t rc)
{
    if (rc == NGX_OK && recs[0].duplicate) {
        rc = NGX_HTTP_USAGE_DUPLICATE;
    }

    ngx_http_usage_post_answer(r, &recs[0], rc);
}


/*
 * The answer to a POST of one event, once the store (or, with ack=redis,
 * Redis) said what became of it: 201, 200 for a client id stored already,
 * or the error; it finalizes the request.
 */

static void
ngx_http_usage_post_answer(ngx_http_request_t *r,
    ngx_http_usage_record_t *rec, ngx_int_t rc)
{
    ngx_int_t                   answer;
    ngx_str_t                   error;
    ngx_http_usage_out_t        out;
    ngx_http_usage_zone_t      *zone;
    ngx_http_usage_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);
    zone = ulcf->api_zone->data;

    if (rc == NGX_HTTP_USAGE_LIMIT_TYPES || rc == NGX_HTTP_USAGE_LIMIT_SHARE) {
        ngx_http_finalize_request(r,
                 ngx_http_usage_send_entity_limited(r,
                                           rc == NGX_HTTP_USAGE_LIMIT_TYPES,
                                           zone->entity_types,
                                           zone->entity_share, NULL));
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_str_set(&error, "The usage store cannot hold this event");
        ngx_http_finalize_request(r,
               ngx_http_usage_send_error(r, NGX_HTTP_INSUFFICIENT_STORAGE,
                                         "STORE_FULL", &error));
        return;
    }

    answer = ngx_http_usage_ack_error(r, rc, 0);

    if (answer != NGX_DECLINED) {
        ngx_http_finalize_request(r, answer);
        return;
    }

    if (rc != NGX_OK && rc != NGX_HTTP_USAGE_DUPLICATE) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_http_usage_position_answer(r, rec) != NGX_OK
        || ngx_http_usage_reply_begin(r, &out, 1,
                             384 + rec->entity.len + rec->type.len
                             + rec->id.len + rec->metadata.len)
           != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rc == NGX_HTTP_USAGE_DUPLICATE && rec->evicted) {
        /* recorded inside the window, but no longer in the raw log */
        ngx_http_usage_out_lit(&out, "{\"id\":");
        ngx_http_usage_out_string(&out, rec->id.data, rec->id.len);
        ngx_http_usage_out_lit(&out, ",\"entityId\":");
        ngx_http_usage_out_string(&out, rec->entity.data, rec->entity.len);
        ngx_http_usage_out_lit(&out, ",\"alreadyRecorded\":true,"
                               "\"note\":\"This id was already recorded for "
                               "this entity; the event itself is no longer in "
                               "the raw event log\"}}");

    } else {
        ngx_http_usage_out_event(&out, rec);
        ngx_http_usage_out_lit(&out, "}");
    }

    ngx_http_finalize_request(r,
                   ngx_http_usage_send_json(r, (rc == NGX_HTTP_USAGE_DUPLICATE)
                                          ? NGX_HTTP_OK : NGX_HTTP_CREATED,
                                       &out));
}


/* application/json or application/<anything>+json, charset utf-8 if any */

static ngx_int_t
ngx_http_usage_json_content_type(ngx_http_request_t *r)
{
    u_char  *p, *end, *type_end, *semi;

    if (r->headers_in.content_type == NULL) {
        return NGX_DECLINED;
    }

    p = r->headers_in.content_type->value.data;
    end = p + r->headers_in.content_type->value.len;

    semi = ngx_strlchr(p, end, ';');
    type_end = semi ? semi : end;

    while (type_end > p && (type_end[-1] == ' ' || type_end[-1] == '\t')) {
        type_end--;
    }

    if (!((type_end - p == 16
           && ngx_strncasecmp(p, (u_char *) "application/json", 16) == 0)
          || (type_end - p > 17
              && ngx_strncasecmp(p, (u_char *) "application/", 12) == 0
              && ngx_strncasecmp(type_end - 5, (u_char *) "+json", 5) == 0)))
    {
        return NGX_DECLINED;
    }

    /* look for a charset parameter; only UTF-8 is JSON's encoding here */

    for (p = semi; p && p < end; p = ngx_strlchr(p + 1, end, ';')) {
        p++;

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (end - p < 8 || ngx_strncasecmp(p, (u_char *) "charset=", 8) != 0) {
            continue;
        }

        p += 8;
        semi = ngx_strlchr(p, end, ';');
        type_end = semi ? semi : end;

        while (type_end > p && (type_end[-1] == ' ' || type_end[-1] == '\t')) {
            type_end--;
        }

        if (type_end - p >= 2 && *p == '"' && type_end[-1] == '"') {
            p++;
            type_end--;
        }

        if (!((type_end - p == 5
               && ngx_strncasecmp(p, (u_char *) "utf-8", 5) == 0)
              || (type_end - p == 4
                  && ngx_strncasecmp(p, (u_char *) "utf8", 4) == 0)))
        {
            return NGX_DECLINED;
        }

        p = type_end;
        if (p >= end) {
            break;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_list_events(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_str_t                  errors[4], entity, type, scope;
    ngx_uint_t                 n, i;
    ngx_http_usage_out_t       out;
    ngx_http_usage_list_t      q;
    ngx_http_usage_record_t   *rec;
    ngx_http_usage_list_key_t  after;

    ngx_memzero(&q, sizeof(ngx_http_usage_list_t));
    q.limit = 100;
    n = 0;

    if (ngx_http_usage_number_arg(r, "limit", 1000, &q.limit) != NGX_OK
        || q.limit == 0)
    {
        ngx_str_set(&errors[n], "limit must be between 1 and 1000");
        n++;
    }

    if (ngx_http_usage_number_arg(r, "offset", NGX_MAX_INT_T_VALUE / 2,
                                  &q.offset)
        != NGX_OK)
    {
        ngx_str_set(&errors[n], "offset must be 0 or greater");
        n++;
    }

    /* an empty filter is no filter, as in the old service */

    rc = ngx_http_usage_filter_arg(r, "entityId", &entity, &q.entity);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_str_set(&errors[n], "entityId must be valid UTF-8");
        n++;
    }

    rc = ngx_http_usage_filter_arg(r, "eventType", &type, &q.type);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_str_set(&errors[n], "eventType must be valid UTF-8");
        n++;
    }

    if (n) {
        return ngx_http_usage_bad_request(r, errors, n);
    }

    /* a scoped key lists its own entity's events: no filter is its filter */
    rc = ngx_http_usage_scope(r, &scope);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        if (q.entity
            && (q.entity->len != scope.len
                || ngx_strncmp(q.entity->data, scope.data, scope.len) != 0))
        {
            return ngx_http_usage_scope_forbidden(r, &scope,
                                                  NGX_HTTP_USAGE_SCOPE_READ);
        }

        q.entity = &scope;
    }

    rc = ngx_http_usage_cursor_arg(r, &q, &after, &errors[0]);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_usage_send_error(r, NGX_HTTP_BAD_REQUEST,
                                         "INVALID_CURSOR", &errors[0]);
    }

    if (ngx_http_usage_store_list(ngx_http_usage_zone_of(r), r->pool, &q,
                                  ngx_http_usage_now())
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_usage_reply_begin(r, &out, 1, 1024) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_usage_out_lit(&out, "{\"events\":[");

    rec = q.records.elts;
    for (i = 0; i < q.records.nelts; i++) {
        if (i) {
            ngx_http_usage_out_lit(&out, ",");
        }

        ngx_http_usage_out_event(&out, &rec[i]);
    }

    if (q.by_key) {
        if (ngx_http_usage_out_cursor_page(r, &out, &q) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else {
        ngx_http_usage_out_offset_page(&out, &q);
    }

    return ngx_http_usage_send_json(r, NGX_HTTP_OK, &out);
}


static void
ngx_http_usage_out_offset_page(ngx_http_usage_out_t *out,
    ngx_http_usage_list_t *q)
{
    ngx_http_usage_out_pair(out, "],\"pagination\":{\"total\":", q->total);
    ngx_http_usage_out_pair(out, ",\"limit\":", q->limit);
    ngx_http_usage_out_pair(out, ",\"offset\":", q->offset);

    if (q->offset + q->limit < q->total) {
        ngx_http_usage_out_lit(out, ",\"hasMore\":true}}}");

    } else {
        ngx_http_usage_out_lit(out, ",\"hasMore\":false}}}");
    }
}


/*
 * cursor: absent, offset paging; empty, the first page of a walk by
 * cursor; else a page's nextCursor.  NGX_DECLINED: refused, *error says
 * why.
 */

static ngx_int_t
ngx_http_usage_cursor_arg(ngx_http_request_t *r, ngx_http_usage_list_t *q,
    ngx_http_usage_list_key_t *after, ngx_str_t *error)
{
    ngx_int_t  rc;
    ngx_str_t  value, offset;

    rc = ngx_http_usage_arg(r->pool, &r->args, "cursor", &value);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    q->by_key = 1;

    rc = ngx_http_usage_arg(r->pool, &r->args, "offset", &offset);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        ngx_str_set(error, "cursor cannot be combined with offset");
        return NGX_DECLINED;
    }

    if (value.len == 0) {
        return NGX_OK;
    }

    if (ngx_http_usage_cursor_decode(ngx_http_usage_cursor_key(r), &value,
                                     q->entity, q->type, after, error)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    q->after = after;

    return NGX_OK;
}


/* the key that signs cursors: usage_cursor_key's, or the zone's */

static ngx_http_usage_sipkey_t *
ngx_http_usage_cursor_key(ngx_http_request_t *r)
{
    ngx_http_usage_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_http_usage_module);

    return umcf->cursor_key ? umcf->cursor_key
                            : ngx_http_usage_store_cursor_key(
                                                 ngx_http_usage_zone_of(r));
}


/* a cursor page's pagination: no total, which costs a walk of them all */

static ngx_int_t
ngx_http_usage_out_cursor_page(ngx_http_request_t *r,
    ngx_http_usage_out_t *out, ngx_http_usage_list_t *q)
{
    u_char  token[NGX_HTTP_USAGE_CURSOR_LEN];

    ngx_http_usage_out_pair(out, "],\"pagination\":{\"limit\":", q->limit);

    if (!q->more) {
        ngx_http_usage_out_lit(out,
                               ",\"nextCursor\":null,\"hasMore\":false}}}");
        return NGX_OK;
    }

    if (ngx_http_usage_cursor_encode(ngx_http_usage_cursor_key(r), &q->last,
                                     q->entity, q->type, token)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_usage_out_lit(out, ",\"nextCursor\":\"");
    ngx_http_usage_out_raw(out, token, NGX_HTTP_USAGE_CURSOR_LEN);
    ngx_http_usage_out_lit(out, "\",\"hasMore\":true}}}");

    return NGX_OK;
}


/*
 * An entityId or eventType filter of the list: absent or empty is no
 * filter (*filter stays NULL); NGX_DECLINED: present but not valid UTF-8,
 * which no stored name can be.
 */

static ngx_int_t
ngx_http_usage_filter_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value, ngx_str_t **filter)
{
    ngx_int_t  rc;

    rc = ngx_http_usage_arg(r->pool, &r->args, name, value);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc != NGX_OK || value->len == 0) {
        return NGX_OK;
    }

    *filter = value;

    return (ngx_http_usage_utf8_valid(value->data, value->len) == NGX_OK)
           ? NGX_OK : NGX_DECLINED;
}


/* limit/offset: absent keeps the default, present must be a plain decimal
 * once %-decoded */

static ngx_int_t
ngx_http_usage_number_arg(ngx_http_request_t *r, const char *name,
    ngx_uint_t max, ngx_uint_t *value)
{
    ngx_int_t  rc;
    ngx_str_t  v;

    rc = ngx_http_usage_arg(r->pool, &r->args, name, &v);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    return ngx_http_usage_parse_decimal(&v, max, value);
}


/*
 * The arguments of a summary or a history: the {entityId} segment, as
 * decoded and trimmed, and since, until (and the interval of a history).
 * NGX_OK: a holds a valid range; NGX_HTTP_BAD_REQUEST: a->errors says
 * why not; NGX_HTTP_FORBIDDEN: the entity is not the one in a->scope.
 */

static ngx_int_t
ngx_http_usage_range_args(ngx_http_request_t *r, ngx_http_usage_route_t *rt,
    ngx_uint_t history, ngx_http_usage_range_args_t *a)
{
    ngx_int_t   rc;
    ngx_uint_t  entity_ok;

    /* the rest is set as it is parsed: a summary is not slowed by
     * zeroing the error list it rarely needs */
    ngx_memzero(&a->q, sizeof(ngx_http_usage_range_t));
    a->nerrors = 0;

    rc = ngx_http_usage_entity_segment(r, rt, a);

    if (rc != NGX_OK) {
        return rc;
    }

    entity_ok = (a->nerrors == 0);

    a->q.since = INT64_MIN;
    a->q.until = INT64_MAX;

    if (ngx_http_usage_range_time(r, "since",
                                  "since must be a valid ISO8601 date",
                                  a, &a->since, &a->q.since)
        != NGX_OK
        || ngx_http_usage_range_time(r, "until",
                                     "until must be a valid ISO8601 date",
                                     a, &a->until, &a->q.until)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    a->q.interval = NGX_HTTP_USAGE_HOUR;
    ngx_str_set(&a->interval, "hour");

    if (history && ngx_http_usage_interval_arg(r, a) != NGX_OK) {
        return NGX_ERROR;
    }

    if (entity_ok) {
        /* a valid id, as it was decoded and trimmed, against the key's */
        rc = ngx_http_usage_scope(r, &a->scope);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK
            && (a->q.entity.len != a->scope.len
                || ngx_strncmp(a->q.entity.data, a->scope.data,
                               a->scope.len) != 0))
        {
            return NGX_HTTP_FORBIDDEN;
        }
    }

    if (a->nerrors) {
        return NGX_HTTP_BAD_REQUEST;
    }

    a->zone = ngx_http_usage_zone_of(r);
    a->now = ngx_http_usage_now();

    return NGX_OK;
}


/* the answer to arguments that range_args() refused */

static ngx_int_t
ngx_http_usage_range_refused(ngx_http_request_t *r, ngx_int_t rc,
    ngx_http_usage_range_args_t *a)
{
    switch (rc) {

    case NGX_HTTP_BAD_REQUEST:
        return ngx_http_usage_bad_request(r, a->errors, a->nerrors);

    case NGX_HTTP_FORBIDDEN:
        return ngx_http_usage_scope_forbidden(r, &a->scope,
                                              NGX_HTTP_USAGE_SCOPE_READ);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


/*
 * The {entityId} segment, %-decoded where the path is still encoded.  A
 * segment that is not UTF-8 is refused on its own (NGX_HTTP_BAD_REQUEST
 * with that one error); the rules of a name add to a->errors.
 */

static ngx_int_t
ngx_http_usage_entity_segment(ngx_http_request_t *r,
    ngx_http_usage_route_t *rt, ngx_http_usage_range_args_t *a)
{
    ngx_int_t   rc;
    ngx_uint_t  flags;

    if (rt->raw) {
        rc = ngx_http_usage_unescape_path(r->pool, &rt->entity, &a->q.entity);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            ngx_http_usage_range_error(a, "entityId must be valid "
                                          "URL-encoded UTF-8");
            return NGX_HTTP_BAD_REQUEST;
        }

    } else {
        a->q.entity = rt->entity;

        if (ngx_http_usage_utf8_valid(a->q.entity.data, a->q.entity.len)
            != NGX_OK)
        {
            ngx_http_usage_range_error(a, "entityId must be valid UTF-8");
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    flags = ngx_http_usage_check_name(&a->q.entity, 255);

    if (flags & NGX_HTTP_USAGE_NAME_EMPTY) {
        ngx_http_usage_range_error(a, "entityId is required");
    }

    if (flags & NGX_HTTP_USAGE_NAME_CONTROL) {
        ngx_http_usage_range_error(a, "entityId must not contain control "
                                      "characters");
    }

    if (flags & NGX_HTTP_USAGE_NAME_LONG) {
        ngx_http_usage_range_error(a, "entityId must be 255 characters or "
                                      "less");
    }

    return NGX_OK;
}


/* since or until: absent leaves *ms as it is; invalid is an error */

static ngx_int_t
ngx_http_usage_range_time(ngx_http_request_t *r, const char *name,
    const char *error, ngx_http_usage_range_args_t *a, ngx_str_t *value,
    int64_t *ms)
{
    ngx_int_t  rc;

    rc = ngx_http_usage_time_arg(r->pool, &r->args, name, value, ms);

    if (rc == NGX_DECLINED) {
        ngx_http_usage_range_error(a, error);
    }

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


static ngx_int_t
ngx_http_usage_interval_arg(ngx_http_request_t *r,
    ngx_http_usage_range_args_t *a)
{
    ngx_int_t   rc;
    ngx_str_t  *v;

    v = &a->interval;

    rc = ngx_http_usage_arg(r->pool, &r->args, "interval", v);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    /* interval values are case-sensitive, unlike route words */

    if (v->len == 6 && ngx_strncmp(v->data, "minute", 6) == 0) {
        a->q.interval = NGX_HTTP_USAGE_MINUTE;

    } else if (v->len == 4 && ngx_strncmp(v->data, "hour", 4) == 0) {
        a->q.interval = NGX_HTTP_USAGE_HOUR;

    } else if (v->len == 3 && ngx_strncmp(v->data, "day", 3) == 0) {
        a->q.interval = NGX_HTTP_USAGE_DAY;

    } else {
        ngx_http_usage_range_error(a, "interval must be minute, hour, or "
                                      "day");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_summary(ngx_http_request_t *r, ngx_http_usage_route_t *rt)
{
    size_t                        size;
    ngx_int_t                     rc;
    ngx_uint_t                    i;
    ngx_http_usage_out_t          out;
    ngx_http_usage_count_t       *c;
    ngx_http_usage_range_args_t   a;

    rc = ngx_http_usage_range_args(r, rt, 0, &a);

    if (rc != NGX_OK) {
        return ngx_http_usage_range_refused(r, rc, &a);
    }

    if (ngx_http_usage_store_summary(a.zone, r->pool, &a.q, a.now) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* each type twice, "name":count and "name":value; the writer grows
     * past a name that needs escapes */
    size = ngx_http_usage_range_size(&a)
           + sizeof(",\"totalEvents\":,\"byEventType\":{},\"totalValue\":"
                    ",\"valueByEventType\":{}") - 1
           + NGX_INT64_LEN + NGX_HTTP_USAGE_DOUBLE_LEN;

    c = a.q.counts.elts;
    for (i = 0; i < a.q.counts.nelts; i++) {
        size += 2 * (c[i].name.len + sizeof("\"\":,") - 1)
                + NGX_INT64_LEN + NGX_HTTP_USAGE_DOUBLE_LEN;
    }

    if (ngx_http_usage_reply_begin(r, &out, 1, size) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_usage_out_lit(&out, "{\"entityId\":");
    ngx_http_usage_out_string(&out, a.q.entity.data, a.q.entity.len);
    ngx_http_usage_out_pair(&out, ",\"totalEvents\":", a.q.total);
    ngx_http_usage_out_lit(&out, ",\"byEventType\":");
    ngx_http_usage_out_counts(&out, &a.q.counts, 0);
    ngx_http_usage_out_lit(&out, ",\"totalValue\":");
    ngx_http_usage_out_double(&out, a.q.value);
    ngx_http_usage_out_lit(&out, ",\"valueByEventType\":");
    ngx_http_usage_out_counts(&out, &a.q.counts, 1);

    ngx_http_usage_out_range_end(&out, &a);

    return ngx_http_usage_send_json(r, NGX_HTTP_OK, &out);
}


static ngx_int_t
ngx_http_usage_history(ngx_http_request_t *r, ngx_http_usage_route_t *rt)
{
    size_t                        size;
    ngx_int_t                     rc;
    ngx_uint_t                    i;
    ngx_http_usage_out_t          out;
    ngx_http_usage_point_t       *pt;
    ngx_http_usage_range_args_t   a;

    rc = ngx_http_usage_range_args(r, rt, 1, &a);

    if (rc != NGX_OK) {
        return ngx_http_usage_range_refused(r, rc, &a);
    }

    if (ngx_http_usage_store_history(a.zone, r->pool, &a.q, a.now) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    size = ngx_http_usage_range_size(&a)
           + sizeof(",\"interval\":\"minute\",\"dataPoints\":[]") - 1
           + a.q.points.nelts
             * (sizeof("{\"timestamp\":\"\",\"count\":,\"value\":},") - 1
                + NGX_HTTP_USAGE_ISO_LEN + NGX_INT64_LEN
                + NGX_HTTP_USAGE_DOUBLE_LEN);

    if (ngx_http_usage_reply_begin(r, &out, 1, size) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_usage_out_lit(&out, "{\"entityId\":");
    ngx_http_usage_out_string(&out, a.q.entity.data, a.q.entity.len);
    ngx_http_usage_out_lit(&out, ",\"interval\":");
    ngx_http_usage_out_string(&out, a.interval.data, a.interval.len);
    ngx_http_usage_out_lit(&out, ",\"dataPoints\":[");

    pt = a.q.points.elts;
    for (i = 0; i < a.q.points.nelts; i++) {
        if (i) {
            ngx_http_usage_out_lit(&out, ",");
        }

        ngx_http_usage_out_lit(&out, "{\"timestamp\":");
        ngx_http_usage_out_iso(&out, pt[i].time);
        ngx_http_usage_out_pair(&out, ",\"count\":", pt[i].count);
        ngx_http_usage_out_lit(&out, ",\"value\":");
        ngx_http_usage_out_double(&out, pt[i].value);
        ngx_http_usage_out_lit(&out, "}");
    }

    ngx_http_usage_out_lit(&out, "]");

    ngx_http_usage_out_range_end(&out, &a);

    return ngx_http_usage_send_json(r, NGX_HTTP_OK, &out);
}


/* what a summary and a history both write: the envelope, the entity id,
 * the resolution and the period */

static size_t
ngx_http_usage_range_size(ngx_http_usage_range_args_t *a)
{
    return sizeof("{\"success\":true,\"data\":{\"entityId\":\"\""
                  ",\"resolution\":\"minute\",\"period\":{\"since\":"
                  ",\"until\":}}}") - 1
           + a->q.entity.len
           + (a->since.data ? a->since.len + 2 : NGX_HTTP_USAGE_ISO_LEN + 2)
           + (a->until.data ? a->until.len + 2 : NGX_HTTP_USAGE_ISO_LEN + 2);
}


/* the end of a range answer: its resolution, its period, and the closing
 * braces of the data and the envelope */

static void
ngx_http_usage_out_range_end(ngx_http_usage_out_t *out,
    ngx_http_usage_range_args_t *a)
{
    /* exact to the millisecond, or to the bucket where the raw events
     * of a cut bucket are no longer all in the log */
    ngx_http_usage_out_lit(out, ",\"resolution\":");

    switch (a->q.resolution) {
    case NGX_HTTP_USAGE_BY_HOUR:
        ngx_http_usage_out_lit(out, "\"hour\"");
        break;
    case NGX_HTTP_USAGE_BY_MINUTE:
        ngx_http_usage_out_lit(out, "\"minute\"");
        break;
    default:
        ngx_http_usage_out_lit(out, "\"exact\"");
    }

    /* the period echoes the query as given, or the defaults */

    ngx_http_usage_out_lit(out, ",\"period\":{\"since\":");

    if (a->since.data) {
        ngx_http_usage_out_string(out, a->since.data, a->since.len);

    } else {
        ngx_http_usage_out_iso(out, ngx_http_usage_store_start_time(a->zone));
    }

    ngx_http_usage_out_lit(out, ",\"until\":");

    if (a->until.data) {
        ngx_http_usage_out_string(out, a->until.data, a->until.len);

    } else {
        ngx_http_usage_out_iso(out, a->now);
    }

    ngx_http_usage_out_lit(out, "}}}");
}


static void
ngx_http_usage_range_error(ngx_http_usage_range_args_t *a, const char *msg)
{
    if (a->nerrors < NGX_HTTP_USAGE_RANGE_ERRORS) {
        a->errors[a->nerrors].data = (u_char *) msg;
        a->errors[a->nerrors].len = ngx_strlen(msg);
        a->nerrors++;
    }
}


/* /v1/usage/stats and /info count every entity: not for a scoped key */

static ngx_int_t
ngx_http_usage_store_wide(ngx_http_request_t *r, ngx_uint_t stats)
{
    ngx_str_t  scope;

    switch (ngx_http_usage_scope_store(r, &scope)) {

    case NGX_DECLINED:
        return stats ? ngx_http_usage_stats(r) : ngx_http_usage_info(r);

    case NGX_OK:
        return ngx_http_usage_scope_forbidden(r, &scope,
                                              NGX_HTTP_USAGE_SCOPE_STORE);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


static ngx_int_t
ngx_http_usage_stats(ngx_http_request_t *r)
{
    int64_t                  now;
    ngx_uint_t               i;
    ngx_http_usage_out_t     out;
    ngx_http_usage_stats_t   st;

    now = ngx_http_usage_now();

    if (ngx_http_usage_store_stats(ngx_http_usage_zone_of(r), r->pool, &st, 1,
                                   now)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_usage_reply_begin(r, &out, 1, 1024) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_usage_out_totals(&out, &st);
    ngx_http_usage_out_lit(&out, ",\"eventsByMinute\":[");

    for (i = 0; i < st.nminutes; i++) {
        if (i) {
            ngx_http_usage_out_lit(&out, ",");
        }

        ngx_http_usage_out_lit(&out, "{\"timestamp\":");
        ngx_http_usage_out_iso(&out, st.minute[i].start);
        ngx_http_usage_out_pair(&out, ",\"count\":", st.minute[i].count);
        ngx_http_usage_out_lit(&out, "}");
    }

    ngx_http_usage_out_lit(&out, "],\"eventTypes\":");
    ngx_http_usage_out_counts(&out, &st.types, 0);
    ngx_http_usage_out_lit(&out, ",\"uptime\":");
    ngx_http_usage_out_uptime(&out, now - st.start_time);
    ngx_http_usage_out_lit(&out, ",\"startTime\":");
    ngx_http_usage_out_iso(&out, st.start_time);

    ngx_http_usage_out_lit(&out, ",\"store\":{\"maxEvents\":");

    if (st.max_events) {
        ngx_http_usage_out_uint(&out, st.max_events);

    } else {
        ngx_http_usage_out_lit(&out, "null");
    }

    ngx_http_usage_out_pair(&out, ",\"events\":", st.raw_events);
    ngx_http_usage_out_pair(&out, ",\"recorded\":", st.recorded);
    ngx_http_usage_out_pair(&out, ",\"duplicates\":", st.duplicates);
    ngx_http_usage_out_pair(&out, ",\"evictions\":", st.raw_evicted);
    ngx_http_usage_out_pair(&out, ",\"expired\":", st.raw_expired);
    ngx_http_usage_out_pair(&out, ",\"drops\":", st.dropped);
    ngx_http_usage_out_pair(&out, ",\"entityLimited\":", st.entity_limited);
    ngx_http_usage_out_pair(&out, ",\"buckets\":", st.buckets);
    ngx_http_usage_out_pair(&out, ",\"bucketEvictions\":",
                            st.buckets_evicted);
    ngx_http_usage_out_pair(&out, ",\"bucketsExpired\":", st.buckets_expired);
    ngx_http_usage_out_pair(&out, ",\"ids\":", st.ids);
    ngx_http_usage_out_pair(&out, ",\"idEvictions\":", st.ids_evicted);
    ngx_http_usage_out_pair(&out, ",\"rawBytes\":", st.raw_bytes);
    ngx_http_usage_out_pair(&out, ",\"rawBytesUsed\":", st.raw_bytes_used);
    ngx_http_usage_out_pair(&out, ",\"zoneBytesUsed\":", st.bytes_used);
    ngx_http_usage_out_pair(&out, ",\"zoneBytesFree\":", st.bytes_free);
    ngx_http_usage_out_pair(&out, ",\"saves\":", st.saves);
    ngx_http_usage_out_lit(&out, ",\"savedAt\":");

    if (st.saved_at) {
        ngx_http_usage_out_iso(&out, st.saved_at);

    } else {
        ngx_http_usage_out_lit(&out, "null");
    }

    ngx_http_usage_out_lit(&out, "}}}");

    return ngx_http_usage_send_json(r, NGX_HTTP_OK, &out);
}


/* the balancer's health check: cheap, and never takes the store's lock */

static ngx_int_t
ngx_http_usage_health(ngx_http_request_t *r)
{
    ngx_http_usage_out_t        out;
    ngx_http_usage_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    if (ngx_http_usage_reply_begin(r, &out, 0, 256) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_usage_out_lit(&out, "{\"status\":\"healthy\",\"timestamp\":");
    ngx_http_usage_out_iso(&out, ngx_http_usage_now());
    ngx_http_usage_out_lit(&out, ",\"service\":");
    ngx_http_usage_out_string(&out, ulcf->service_name.data,
                              ulcf->service_name.len);
    ngx_http_usage_out_lit(&out, ",\"version\":");
    ngx_http_usage_out_string(&out, ulcf->service_version.data,
                              ulcf->service_version.len);
    ngx_http_usage_out_lit(&out, "}");

    return ngx_http_usage_send_json(r, NGX_HTTP_OK, &out);
}


/*
 * Readiness: a worker that is shutting down (QUIT, reload, upgrade) says
 * so, so that a balancer stops sending it new requests while the ones in
 * flight finish; so does every worker while the drain file exists.
 */

static ngx_int_t
ngx_http_usage_ready(ngx_http_request_t *r)
{
    const char                    *name;
    ngx_uint_t                     exiting, draining, store_ok, ready;
    ngx_http_usage_out_t           out;
    ngx_http_usage_zone_t         *zone;
    ngx_http_usage_sync_status_t   sync;

    zone = ngx_http_usage_zone_of(r);

    exiting = (ngx_exiting || ngx_quit || ngx_terminate);
    draining = !exiting && ngx_http_usage_draining(r);
    store_ok = ngx_http_usage_store_ready(zone);

    /*
     * Redis down leaves the instance ready: it answers from its zone.  A
     * new instance that loads the fleet's snapshot is not: its totals
     * would be short of the fleet's until it has.
     */
    name = NULL;

    if (ngx_http_usage_sync_status(zone, &sync) == NGX_OK) {
        name = ngx_http_usage_sync_state_name(sync.state);
    }

    ready = !(exiting || draining || !store_ok
              || (name && sync.state == NGX_HTTP_USAGE_SYNC_BOOTSTRAPPING));

    if (ngx_http_usage_reply_begin(r, &out, 0, 256) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!ready) {
        ngx_http_usage_out_lit(&out, "{\"status\":\"not_ready\"");

    } else {
        ngx_http_usage_out_lit(&out, "{\"status\":\"ready\"");
    }

    ngx_http_usage_out_lit(&out, ",\"timestamp\":");
    ngx_http_usage_out_iso(&out, ngx_http_usage_now());

    if (exiting) {
        ngx_http_usage_out_lit(&out,
                               ",\"checks\":{\"service\":\"shutting_down\"");
    } else if (draining) {
        ngx_http_usage_out_lit(&out, ",\"checks\":{\"service\":\"draining\"");
    } else {
        ngx_http_usage_out_lit(&out, ",\"checks\":{\"service\":\"ok\"");
    }

    if (store_ok) {
        ngx_http_usage_out_lit(&out, ",\"store\":\"ok\"");

    } else {
        ngx_http_usage_out_lit(&out, ",\"store\":\"unavailable\"");
    }

    if (name) {
        ngx_http_usage_out_lit(&out, ",\"sync\":");
        ngx_http_usage_out_string(&out, (u_char *) name, ngx_strlen(name));
    }

    ngx_http_usage_out_lit(&out, "}}");

    return ngx_http_usage_send_json(r, ready ? NGX_HTTP_OK
                                             : NGX_HTTP_SERVICE_UNAVAILABLE,
                                    &out);
}


static ngx_int_t
ngx_http_usage_info(ngx_http_request_t *r)
{
    int64_t                     now;
    ngx_http_usage_out_t        out;
    ngx_http_usage_stats_t      st;
    ngx_http_usage_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);
    now = ngx_http_usage_now();

    if (ngx_http_usage_store_stats(ngx_http_usage_zone_of(r), r->pool, &st, 0,
                                   now)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_usage_reply_begin(r, &out, 0, 1024) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_usage_out_lit(&out, "{\"service\":");
    ngx_http_usage_out_string(&out, ulcf->service_name.data,
                              ulcf->service_name.len);
    ngx_http_usage_out_lit(&out, ",\"version\":");
    ngx_http_usage_out_string(&out, ulcf->service_version.data,
                              ulcf->service_version.len);
    ngx_http_usage_out_lit(&out, ",\"environment\":");
    ngx_http_usage_out_string(&out, ulcf->environment.data,
                              ulcf->environment.len);
    ngx_http_usage_out_lit(&out, ",\"uptime\":");
    ngx_http_usage_out_uptime(&out, now - st.start_time);
    ngx_http_usage_out_lit(&out, ",\"stats\":");
    ngx_http_usage_out_totals(&out, &st);
    ngx_http_usage_out_lit(&out, "}");

    ngx_http_usage_out_sync(&out, ngx_http_usage_zone_of(r));

    ngx_http_usage_out_lit(&out, "}");

    return ngx_http_usage_send_json(r, NGX_HTTP_OK, &out);
}


/* /info's "sync": where this instance syncs, and how that goes */

static void
ngx_http_usage_out_sync(ngx_http_usage_out_t *out,
    ngx_http_usage_zone_t *zone)
{
    u_char                          hex[NGX_HTTP_USAGE_ORIGIN_HEX];
    const char                     *name;
    ngx_http_usage_sync_status_t    st;
    ngx_http_usage_fleet_status_t   fs;

    if (ngx_http_usage_sync_status(zone, &st) != NGX_OK) {
        return;
    }

    name = ngx_http_usage_sync_state_name(st.state);

    ngx_http_usage_out_lit(out, ",\"sync\":{\"state\":");
    ngx_http_usage_out_string(out, (u_char *) name, ngx_strlen(name));
    ngx_http_usage_out_lit(out, ",\"since\":");

    if (st.since) {
        ngx_http_usage_out_iso(out, st.since);

    } else {
        ngx_http_usage_out_lit(out, "null");
    }

    ngx_http_usage_out_lit(out, ",\"instance\":");
    ngx_http_usage_out_string(out, st.conf->name.data, st.conf->name.len);
    ngx_http_usage_out_lit(out, ",\"redis\":");
    ngx_http_usage_out_string(out, st.conf->address.data,
                              st.conf->address.len);
    ngx_http_usage_out_lit(out, ",\"stream\":");
    ngx_http_usage_out_string(out, st.conf->stream.data,
                              st.conf->stream.len);
    ngx_http_usage_out_pair(out, ",\"worker\":", (uint64_t) st.owner);
    ngx_http_usage_out_pair(out, ",\"roundTripMs\":", (uint64_t) st.rtt);
    ngx_http_usage_out_pair(out, ",\"connects\":", st.connects);
    ngx_http_usage_out_pair(out, ",\"failures\":", st.failures);

    /* the zone's place in the fleet: its origin, its last event, how far
     * it has read the stream, what Redis does not have yet */
    if (ngx_http_usage_store_fleet_status(zone, &fs) == NGX_OK) {
        ngx_http_usage_out_lit(out, ",\"origin\":\"");
        ngx_http_usage_out_raw(out, hex,
                               ngx_http_usage_origin_hex(hex, fs.origin)
                               - hex);
        ngx_http_usage_out_lit(out, "\"");
        ngx_http_usage_out_pair(out, ",\"lastSeq\":", fs.seq);
        ngx_http_usage_out_lit(out, ",\"readPosition\":\"");
        ngx_http_usage_out_uint(out, fs.read_ms);
        ngx_http_usage_out_lit(out, "-");
        ngx_http_usage_out_uint(out, fs.read_seq);
        ngx_http_usage_out_lit(out, "\"");
        ngx_http_usage_out_pair(out, ",\"queued\":", fs.queued);

        /* the epoch of Redis's data set that the zone reads, and how
         * often it found Redis without it */
        if (fs.epoch) {
            ngx_http_usage_out_lit(out, ",\"epoch\":\"");
            ngx_http_usage_out_raw(out, hex,
                                   ngx_http_usage_origin_hex(hex, fs.epoch)
                                   - hex);
            ngx_http_usage_out_lit(out, "\"");

        } else {
            ngx_http_usage_out_lit(out, ",\"epoch\":null");
        }

        ngx_http_usage_out_pair(out, ",\"streamLosses\":", fs.epochs);
        ngx_http_usage_out_pair(out, ",\"republished\":", fs.republished);
    }

    ngx_http_usage_out_lit(out, "}");
}


static ngx_int_t
ngx_http_usage_root(ngx_http_request_t *r, ngx_uint_t docs)
{
    ngx_http_usage_out_t        out;
    ngx_http_usage_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    if (ngx_http_usage_reply_begin(r, &out, 0, 1024) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_usage_out_lit(&out, "{\"service\":");
    ngx_http_usage_out_string(&out, ulcf->service_name.data,
                              ulcf->service_name.len);
    ngx_http_usage_out_lit(&out, ",\"version\":");
    ngx_http_usage_out_string(&out, ulcf->service_version.data,
                              ulcf->service_version.len);

    if (docs) {
        ngx_http_usage_out_lit(&out,
            ",\"routes\":["
            "{\"method\":\"POST\",\"path\":\"/v1/events\","
             "\"description\":\"Record a usage event\"},"
            "{\"method\":\"POST\",\"path\":\"/v1/events/batch\","
             "\"description\":\"Record 1 to 1000 events, all or none\"},"
            "{\"method\":\"GET\",\"path\":\"/v1/events\","
             "\"description\":\"List events, newest first\","
             "\"query\":[\"entityId\",\"eventType\",\"limit\",\"offset\","
                        "\"cursor\"]},"
            "{\"method\":\"GET\",\"path\":\"/v1/entities\","
             "\"description\":\"Entities ranked by usage\","
             "\"query\":[\"since\",\"until\",\"sort\",\"limit\",\"cursor\"]},"
            "{\"method\":\"GET\",\"path\":\"/v1/usage/stats\","
             "\"description\":\"Global statistics\"},"
            "{\"method\":\"GET\",\"path\":\"/v1/usage/{entityId}\","
             "\"description\":\"Usage summary of an entity\","
             "\"query\":[\"since\",\"until\"]},"
            "{\"method\":\"GET\",\"path\":\"/v1/usage/{entityId}/history\","
             "\"description\":\"Usage of an entity in time buckets\","
             "\"query\":[\"since\",\"until\",\"interval\"]},"
            "{\"method\":\"GET\",\"path\":\"/health\","
             "\"description\":\"Liveness\"},"
            "{\"method\":\"GET\",\"path\":\"/ready\","
             "\"description\":\"Readiness\"},"
            "{\"method\":\"GET\",\"path\":\"/info\","
             "\"description\":\"Service information\"},"
            "{\"method\":\"GET\",\"path\":\"/\","
             "\"description\":\"Where things are\"},"
            "{\"method\":\"GET\",\"path\":\"/docs\","
             "\"description\":\"This list; for a browser, the HTML "
             "reference\"},"
            "{\"method\":\"GET\",\"path\":\"/openapi.json\","
             "\"description\":\"The OpenAPI 3.1 document of this "
             "API\"},"
            "{\"method\":\"GET\",\"path\":\"/dashboard\","
             "\"description\":\"The live usage dashboard, for a "
             "browser\"}]}");

    } else {
        ngx_http_usage_out_lit(&out,
            ",\"documentation\":\"/docs\",\"openapi\":\"/openapi.json\","
            "\"dashboard\":\"/dashboard\",\"health\":\"/health\","
            "\"api\":{\"events\":\"/v1/events\",\"usage\":\"/v1/usage\"}}");
    }

    return ngx_http_usage_send_json(r, NGX_HTTP_OK, &out);
}


/*
 * GET /docs: for a browser the HTML reference made from the OpenAPI
 * document (scripts/embed), for any other client the JSON list of routes;
 * either way the answer depends on Accept, which caches must know.
 */

static ngx_int_t
ngx_http_usage_docs(ngx_http_request_t *r)
{
    ngx_str_t  vary;

    ngx_str_set(&vary, "Accept");
    if (ngx_http_usage_add_header_lit(r, "Vary", &vary) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_usage_prefers_html(r)) {
        return ngx_http_usage_send_asset(r, NGX_HTTP_USAGE_ASSET_DOCS_HTML);
    }

    return ngx_http_usage_root(r, 1);
}


/* the counters shared by /v1/usage/stats and /info, object left open */

static void
ngx_http_usage_out_totals(ngx_http_usage_out_t *out,
    ngx_http_usage_stats_t *st)
{
    ngx_http_usage_out_pair(out, "{\"totalEvents\":", st->total);
    ngx_http_usage_out_pair(out, ",\"eventsLastHour\":", st->last_hour);
    ngx_http_usage_out_pair(out, ",\"uniqueEntities\":", st->entities);
}


/* {"ms":N,"human":"1h 2m"}: the two largest units, floored */

static void
ngx_http_usage_out_uptime(ngx_http_usage_out_t *out, int64_t ms)
{
    u_char    buf[64], *p;
    uint64_t  s;

    if (ms < 0) {
        ms = 0;
    }

    s = ms / 1000;

    if (s >= 86400) {
        p = ngx_sprintf(buf, "%uLd %uLh", s / 86400, s % 86400 / 3600);

    } else if (s >= 3600) {
        p = ngx_sprintf(buf, "%uLh %uLm", s / 3600, s % 3600 / 60);

    } else if (s >= 60) {
        p = ngx_sprintf(buf, "%uLm %uLs", s / 60, s % 60);

    } else {
        p = ngx_sprintf(buf, "%uLs", s);
    }

    ngx_http_usage_out_pair(out, "{\"ms\":", (uint64_t) ms);
    ngx_http_usage_out_lit(out, ",\"human\":");
    ngx_http_usage_out_string(out, buf, p - buf);
    ngx_http_usage_out_lit(out, "}");
}
