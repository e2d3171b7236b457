
/*
 * Self-tracking in the log phase: one event per request, recorded after
 * the response was sent, so it never delays one; when the store cannot
 * take it, it is dropped and counted, never an error.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_store.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_id.h"
#include "ngx_http_usage_number.h"
#include "ngx_http_usage_text.h"
#include "ngx_http_usage_time.h"
#include "ngx_http_usage_request.h"
#include "ngx_http_usage_route.h"
#include "ngx_http_usage_trace.h"
#include "ngx_http_usage_metrics.h"
#include "ngx_http_usage_track.h"


/* a default name of self-tracking, and its hash once computed */
typedef struct {
    ngx_str_t                    name;
    uint32_t                     hash;
} ngx_http_usage_name_t;


/* the shape of the self-tracking event's metadata, without its values */
#define NGX_HTTP_USAGE_SELF_METADATA                                         \
    "{\"method\":\"\",\"path\":,\"statusCode\":,\"duration\":,\"traceId\":\"\"}"


static ngx_int_t ngx_http_usage_track_name(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_http_usage_name_t *def,
    size_t max_chars, ngx_str_t *value, uint32_t *hash);
static ngx_int_t ngx_http_usage_track_metadata(ngx_http_request_t *r,
    ngx_uint_t status, int64_t duration, ngx_str_t *metadata);


static ngx_http_usage_name_t  ngx_http_usage_self_entity = {
    ngx_string("api-self"), 0
};

static ngx_http_usage_name_t  ngx_http_usage_self_type = {
    ngx_string("api_call"), 0
};


ngx_int_t
ngx_http_usage_track_handler(ngx_http_request_t *r)
{
    int64_t                     now, duration;
    ngx_uint_t                  status;
    ngx_http_usage_zone_t      *zone;
    ngx_http_usage_record_t     rec;
    ngx_http_usage_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    if (ulcf->track_zone == NULL || r != r->main) {
        return NGX_OK;
    }

    if (ulcf->api_zone && ngx_http_usage_untracked_route(r)) {
        return NGX_OK;
    }

    zone = ulcf->track_zone->data;

    /* $request_time, to the millisecond */
    now = ngx_http_usage_now();
    duration = now - ((int64_t) r->start_sec * 1000 + r->start_msec);

    if (duration < 0) {
        duration = 0;
    }

    status = r->err_status ? r->err_status : r->headers_out.status;

    /* the traffic counts whether or not the event can be recorded */
    ngx_http_usage_metrics_count(zone, r, status, duration);

    if (ngx_http_usage_track_name(r, ulcf->track_entity,
                                  &ngx_http_usage_self_entity, 255,
                                  &rec.entity, &rec.entity_hash)
        != NGX_OK
        || ngx_http_usage_track_name(r, ulcf->track_type,
                                     &ngx_http_usage_self_type, 100,
                                     &rec.type, &rec.type_hash)
           != NGX_OK)
    {
        /* no usable name (e.g. no API key header): counted, not recorded */
        ngx_http_usage_store_count_drop(zone);
        return NGX_OK;
    }

    if (ngx_http_usage_track_metadata(r, status, duration, &rec.metadata)
        != NGX_OK)
    {
        ngx_http_usage_store_count_drop(zone);
        return NGX_OK;
    }

    ngx_http_usage_uuid_v4(rec.uuid);
    ngx_str_null(&rec.id);
    rec.value = 1;
    rec.has_time = 0;

    /* a full store drops and counts the event itself */
    (void) ngx_http_usage_store_insert(zone, r->pool, &rec, now);

    return NGX_OK;
}


/* a name of the self-tracking event: the default's hash is kept, the
 * store computes that of a configured one */

static ngx_int_t
ngx_http_usage_track_name(ngx_http_request_t *r, ngx_http_complex_value_t *cv,
    ngx_http_usage_name_t *def, size_t max_chars, ngx_str_t *value,
    uint32_t *hash)
{
    if (cv == NULL) {
        if (def->hash == 0) {
            def->hash = ngx_http_usage_name_hash(def->name.data,
                                                 def->name.len);
        }

        *value = def->name;
        *hash = def->hash;
        return NGX_OK;
    }

    *hash = 0;

    if (ngx_http_complex_value(r, cv, value) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the same rules as a POSTed event: values come from clients */

    if (ngx_http_usage_utf8_valid(value->data, value->len) != NGX_OK
        || ngx_http_usage_check_name(value, max_chars) != 0)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}

/*
 * The event's metadata: {"method","path","statusCode","duration",
 * "traceId"}, written in place into a buffer of the largest size it can
 * take.  The path is raw bytes from the request line: the JSON string
 * writer turns invalid UTF-8 into U+FFFD.  The method (letters, '_' and
 * '-', as nginx parses it) and the trace id (checked, or made here) never
 * need an escape.
 */

static ngx_int_t
ngx_http_usage_track_metadata(ngx_http_request_t *r, ngx_uint_t status,
    int64_t duration, ngx_str_t *metadata)
{
    u_char     *p;
    ngx_str_t   path, trace;

    if (ngx_http_usage_request_path(r, &path) != NGX_OK
        || ngx_http_usage_trace_id(r, &trace) != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, sizeof(NGX_HTTP_USAGE_SELF_METADATA) - 1
                             + r->method_name.len
                             + NGX_HTTP_USAGE_JSON_STRING_MAX(path.len)
                             + 2 * NGX_INT64_LEN + trace.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    metadata->data = p;

    p = ngx_cpymem(p, "{\"method\":\"", sizeof("{\"method\":\"") - 1);

    if (r->method_name.len) {
        /* a bad request line has none, and no pointer either */
        p = ngx_cpymem(p, r->method_name.data, r->method_name.len);
    }

    p = ngx_cpymem(p, "\",\"path\":", sizeof("\",\"path\":") - 1);
    p = ngx_http_usage_json_string(p, path.data, path.len);
    p = ngx_cpymem(p, ",\"statusCode\":", sizeof(",\"statusCode\":") - 1);
    p = ngx_http_usage_write_uint(p, status);
    p = ngx_cpymem(p, ",\"duration\":", sizeof(",\"duration\":") - 1);
    p = ngx_http_usage_write_uint(p, duration);
    p = ngx_cpymem(p, ",\"traceId\":\"", sizeof(",\"traceId\":\"") - 1);
    p = ngx_cpymem(p, trace.data, trace.len);
    *p++ = '"';
    *p++ = '}';

    metadata->len = p - metadata->data;

    return NGX_OK;
}
