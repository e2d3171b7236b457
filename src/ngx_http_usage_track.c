
/*
 * Trace ids, the $usage_trace_id variable, and self-tracking in the log
 * phase: one event per request, recorded after the response was sent, so
 * it never delays one; when the store cannot take it, it is dropped and
 * counted, never an error.  Every line that nginx logs for a request in
 * the module's locations ends with ", trace id: ...", as does every line
 * of a request that already has its id.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_id.h"
#include "ngx_http_usage_number.h"
#include "ngx_http_usage_text.h"
#include "ngx_http_usage_time.h"


/* a default name of self-tracking, and its hash once computed */
typedef struct {
    ngx_str_t                    name;
    uint32_t                     hash;
} ngx_http_usage_name_t;


/* the shape of the self-tracking event's metadata, without its values */
#define NGX_HTTP_USAGE_SELF_METADATA                                         \
    "{\"method\":\"\",\"path\":,\"statusCode\":,\"duration\":,\"traceId\":\"\"}"


static ngx_uint_t ngx_http_usage_trace_id_valid(ngx_str_t *id);
static ngx_int_t ngx_http_usage_traceparent(ngx_table_elt_t *h,
    ngx_str_t *id);
static ngx_int_t ngx_http_usage_track_name(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_http_usage_name_t *def,
    size_t max_chars, ngx_str_t *value, uint32_t *hash);
static void ngx_http_usage_log_context(ngx_http_request_t *r);
static u_char *ngx_http_usage_log_error(ngx_http_request_t *r,
    ngx_http_request_t *sr, u_char *buf, size_t len);


static ngx_http_usage_name_t  ngx_http_usage_self_entity = {
    ngx_string("api-self"), 0
};

static ngx_http_usage_name_t  ngx_http_usage_self_type = {
    ngx_string("api_call"), 0
};


/* the request's own log context, normally ngx_http_log_error_handler() */
static ngx_http_log_handler_pt  ngx_http_usage_next_log_handler;


ngx_int_t
ngx_http_usage_trace_id(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_http_variable_value_t   *v;
    ngx_http_usage_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_http_usage_module);

    v = ngx_http_get_indexed_variable(r->main, umcf->trace_var_index);

    if (v == NULL || v->not_found) {
        return NGX_ERROR;
    }

    id->data = v->data;
    id->len = v->len;

    return NGX_OK;
}


/*
 * The configured header if it is a safe id (it goes into logs and
 * headers), else the trace-id of a W3C traceparent, else a new UUID v4.
 */

ngx_int_t
ngx_http_usage_trace_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                      *p, raw[16];
    ngx_str_t                    id;
    ngx_table_elt_t             *h;
    ngx_http_variable_value_t   *mv;
    ngx_http_usage_loc_conf_t   *ulcf;
    ngx_http_usage_main_conf_t  *umcf;

    if (r != r->main) {
        /* one id per client request, whatever its subrequests see */
        umcf = ngx_http_get_module_main_conf(r, ngx_http_usage_module);

        mv = ngx_http_get_indexed_variable(r->main, umcf->trace_var_index);
        if (mv == NULL || mv->not_found) {
            return NGX_ERROR;
        }

        *v = *mv;
        return NGX_OK;
    }

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    h = ngx_http_usage_find_header(r, ulcf->trace_header.data,
                                   ulcf->trace_header.len);

    if (h) {
        id = h->value;

        if (!ngx_http_usage_trace_id_valid(&id)) {
            ngx_str_null(&id);
        }

    } else {
        h = ngx_http_usage_find_header(r, (u_char *) "traceparent",
                                       sizeof("traceparent") - 1);

        if (h == NULL || ngx_http_usage_traceparent(h, &id) != NGX_OK) {
            ngx_str_null(&id);
        }
    }

    if (id.len == 0) {
        p = ngx_pnalloc(r->pool, NGX_HTTP_USAGE_UUID_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_http_usage_uuid_v4(raw);

        id.data = p;
        id.len = ngx_http_usage_uuid_format(p, raw) - p;
    }

    v->data = id.data;
    v->len = id.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    ngx_http_usage_log_context(r);

    return NGX_OK;
}


/*
 * Post-read phase: the request's error-log lines go through the wrapper
 * before nginx chooses a location, since nginx logs and refuses a body
 * announced too large (413) as it chooses it, before any later phase.
 * Whether a line carries the trace id is decided as it is logged, by the
 * location the request is in then: nothing is done for a request that
 * logs nothing.
 */

ngx_int_t
ngx_http_usage_trace_handler(ngx_http_request_t *r)
{
    ngx_http_usage_log_context(r);

    return NGX_DECLINED;
}


/*
 * nginx calls r->log_handler for every error-log line of a request: the
 * wrapper appends the trace id once it is known.  Only the handler nginx
 * installs is wrapped; one that another module put there is left alone.
 */

static void
ngx_http_usage_log_context(ngx_http_request_t *r)
{
    if (r->log_handler == ngx_http_usage_log_error
        || r->log_handler == NULL)
    {
        return;
    }

    if (ngx_http_usage_next_log_handler == NULL) {
        ngx_http_usage_next_log_handler = r->log_handler;

    } else if (r->log_handler != ngx_http_usage_next_log_handler) {
        return;
    }

    r->log_handler = ngx_http_usage_log_error;
}


static u_char *
ngx_http_usage_log_error(ngx_http_request_t *r, ngx_http_request_t *sr,
    u_char *buf, size_t len)
{
    u_char                      *p;
    ngx_str_t                    id;
    ngx_http_variable_value_t   *v;
    ngx_http_usage_loc_conf_t   *ulcf;
    ngx_http_usage_main_conf_t  *umcf;

    /* a line logged while the id is made (a debug line of the pool) */
    static ngx_uint_t  making;

    p = ngx_http_usage_next_log_handler(r, sr, buf, len);
    len -= p - buf;

    umcf = ngx_http_get_module_main_conf(r, ngx_http_usage_module);

    if (r->variables == NULL || umcf == NULL
        || umcf->trace_var_index == NGX_ERROR)
    {
        return p;
    }

    v = &r->variables[umcf->trace_var_index];

    if (!v->valid && !v->not_found && !making) {

        /*
         * In a module's location the line makes the id, as the variable
         * does (from the trace header, or a new one): the value is kept
         * in r->variables, so the answer's x-trace-id and error body carry
         * the same.  r is the main request, whose id it is.
         */
        ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

        if (ulcf->api_zone || ulcf->track_zone || ulcf->metrics_zone) {
            making = 1;
            (void) ngx_http_usage_trace_id(r, &id);
            making = 0;
        }
    }

    if (v->valid && !v->not_found && v->len) {
        p = ngx_snprintf(p, len, ", trace id: %*s", (size_t) v->len, v->data);
    }

    return p;
}


/* the path the client asked for, without the query string, as sent */

ngx_int_t
ngx_http_usage_request_path(ngx_http_request_t *r, ngx_str_t *path)
{
    if (r->unparsed_uri.len == 0) {
        *path = r->uri;
        return NGX_OK;
    }

    *path = r->unparsed_uri;
    ngx_http_usage_cut_query(r, path);

    return NGX_OK;
}


ngx_int_t
ngx_http_usage_track_handler(ngx_http_request_t *r)
{
    int64_t                     now, duration;
    ngx_str_t                   path, trace;
    ngx_uint_t                  status;
    u_char                     *p;
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

    if (ngx_http_usage_request_path(r, &path) != NGX_OK
        || ngx_http_usage_trace_id(r, &trace) != NGX_OK)
    {
        ngx_http_usage_store_count_drop(zone);
        return NGX_OK;
    }

    /*
     * Written in place into a buffer of the largest size it can take.
     * The path is raw bytes from the request line: the JSON string writer
     * turns invalid UTF-8 into U+FFFD.  The method (letters, '_' and '-',
     * as nginx parses it) and the trace id (checked, or made here) never
     * need an escape.
     */

    p = ngx_pnalloc(r->pool, sizeof(NGX_HTTP_USAGE_SELF_METADATA) - 1
                             + r->method_name.len
                             + NGX_HTTP_USAGE_JSON_STRING_MAX(path.len)
                             + 2 * NGX_INT64_LEN + trace.len);
    if (p == NULL) {
        ngx_http_usage_store_count_drop(zone);
        return NGX_OK;
    }

    rec.metadata.data = p;

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

    rec.metadata.len = p - rec.metadata.data;

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


ngx_table_elt_t *
ngx_http_usage_find_header(ngx_http_request_t *r, u_char *name, size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, name, len) == 0)
        {
            return &h[i];
        }
    }
}


static ngx_uint_t
ngx_http_usage_trace_id_valid(ngx_str_t *id)
{
    size_t  i;
    u_char  c;

    if (id->len == 0 || id->len > NGX_HTTP_USAGE_TRACE_ID_MAX) {
        return 0;
    }

    for (i = 0; i < id->len; i++) {
        c = id->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == ':' || c == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/* traceparent: 2 hex version - 32 hex trace-id - 16 hex parent - 2 hex */

static ngx_int_t
ngx_http_usage_traceparent(ngx_table_elt_t *h, ngx_str_t *id)
{
    size_t       i;
    u_char      *p, c;
    ngx_uint_t   trace_zero, parent_zero;

    p = h->value.data;

    if (h->value.len < 55 || p[2] != '-' || p[35] != '-' || p[52] != '-') {
        return NGX_DECLINED;
    }

    /* version 00 has exactly 55 characters; later ones may append "-..." */
    if (h->value.len > 55 && ((p[0] == '0' && p[1] == '0') || p[55] != '-')) {
        return NGX_DECLINED;
    }

    trace_zero = 1;
    parent_zero = 1;

    for (i = 0; i < 55; i++) {
        if (i == 2 || i == 35 || i == 52) {
            continue;
        }

        c = p[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return NGX_DECLINED;
        }

        if (c != '0') {
            if (i > 2 && i < 35) {
                trace_zero = 0;

            } else if (i > 35 && i < 52) {
                parent_zero = 0;
            }
        }
    }

    /* version ff and all-zero ids are invalid */
    if ((p[0] == 'f' && p[1] == 'f') || trace_zero || parent_zero) {
        return NGX_DECLINED;
    }

    id->data = p + 3;
    id->len = 32;

    return NGX_OK;
}
