
/*
 * ngx_http_usage_module: usage metering built into nginx.
 *
 * Types shared by the module's files: configuration, per-request context,
 * and the entry points each file exports to the others.
 */


#ifndef _NGX_HTTP_USAGE_MODULE_H_INCLUDED_
#define _NGX_HTTP_USAGE_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_store.h"
#include "ngx_http_usage_json.h"


#define NGX_HTTP_USAGE_VERSION          "0.1.0"
#define NGX_HTTP_USAGE_NAME             "ngx_http_usage_module"

#define NGX_HTTP_USAGE_TRACE_ID_MAX     128
#define NGX_HTTP_USAGE_UUID_LEN         36
#define NGX_HTTP_USAGE_CORS_MAX_AGE     "86400"

/* a zone holds the store's context, the ring and some aggregates */
#define NGX_HTTP_USAGE_ZONE_MIN_PAGES   16

/* request body limit where client_max_body_size is 0 (unlimited) */
#define NGX_HTTP_USAGE_BODY_CEILING     (1024 * 1024)


/* usage_api_keys (ngx_http_usage_keys.h) */
typedef struct ngx_http_usage_key_s   ngx_http_usage_key_t;
typedef struct ngx_http_usage_keys_s  ngx_http_usage_keys_t;


typedef struct {
    ngx_shm_zone_t              *zone;
    ngx_str_t                    file;             /* where it is named */
    ngx_uint_t                   line;
} ngx_http_usage_zone_ref_t;


/* usage_drain_file: one per file, whatever the number of locations */
typedef struct {
    ngx_str_t                    path;             /* full, null-terminated */
    time_t                       checked;          /* ngx_time() of the stat */
    ngx_err_t                    err;              /* of the last stat */
    ngx_uint_t                   exists;
} ngx_http_usage_drain_t;


typedef struct {
    ngx_array_t                  zone_refs;        /* zone_ref_t */
    ngx_array_t                  zones;            /* zone_ref_t, declared */
    ngx_array_t                  drains;           /* drain_t * */
    ngx_array_t                 *api_keys;         /* keys_t *, or NULL */
    ngx_flag_t                   tracking_used;
    ngx_int_t                    trace_var_index;
} ngx_http_usage_main_conf_t;


typedef struct {
    /* a location of this server has usage_api: errors nginx answers
     * before any location is chosen (a bad request line) are JSON too */
    ngx_flag_t                   has_api;
} ngx_http_usage_srv_conf_t;


typedef struct {
    /* usage_api: the zone this location serves the API from, or NULL */
    ngx_shm_zone_t              *api_zone;

    /* usage_track: zone to record into; NULL with track_set means "off" */
    ngx_shm_zone_t              *track_zone;
    ngx_flag_t                   track_set;
    ngx_http_complex_value_t    *track_entity;
    ngx_http_complex_value_t    *track_type;

    ngx_str_t                    trace_header;     /* as configured */
    ngx_str_t                    trace_header_lc;  /* echoed, lower case */
    ngx_str_t                    service_name;
    ngx_str_t                    service_version;
    ngx_str_t                    environment;
    ngx_str_t                    cors_origin;

    size_t                       metadata_max_size;
    ngx_uint_t                   metadata_max_depth;

    /* usage_metrics: the zone this location exposes, or NULL */
    ngx_shm_zone_t              *metrics_zone;

    /* usage_drain_file: NULL when not in effect here */
    ngx_http_usage_drain_t      *drain;

    time_t                       retry_after;
    ngx_str_t                    retry_after_value;

    /* usage_entity_scope: the only entity a request may see, or NULL */
    ngx_http_complex_value_t    *entity_scope;

    /* usage_api_keys: NULL when not in effect here */
    ngx_http_usage_keys_t       *api_keys;
    ngx_str_t                    api_key_header;
    ngx_str_t                    api_key_challenge; /* WWW-Authenticate */

    /* the headers every answer of the API carries, ready to be copied
     * into a response at once; the first is the trace id's (shared with
     * the parent location's when nothing they depend on differs) */
    ngx_array_t                 *headers;
} ngx_http_usage_loc_conf_t;


typedef struct {
    /* the response body was produced by the module: leave it alone */
    unsigned                     own_body:1;

    /* an nginx-generated error page is being replaced by the JSON envelope */
    unsigned                     swap_body:1;
    unsigned                     swap_sent:1;

    /* the API handler routed the request; to /health or /ready */
    unsigned                     routed:1;
    unsigned                     untracked:1;

    ngx_str_t                    swap;

    /* the request's API key, looked up in api_keys_seen (a location
     * with another file looks again) */
    ngx_http_usage_keys_t       *api_keys_seen;
    ngx_http_usage_key_t        *api_key;
} ngx_http_usage_ctx_t;


extern ngx_module_t  ngx_http_usage_module;


/* ngx_http_usage_module.c */
ngx_http_usage_ctx_t *ngx_http_usage_get_ctx(ngx_http_request_t *r);

/* ngx_http_usage_api.c */
ngx_int_t ngx_http_usage_api_handler(ngx_http_request_t *r);
ngx_uint_t ngx_http_usage_untracked_route(ngx_http_request_t *r);
ngx_int_t ngx_http_usage_not_allowed_message(ngx_http_request_t *r,
    ngx_str_t *msg);
ngx_int_t ngx_http_usage_too_large_message(ngx_http_request_t *r,
    ngx_str_t *msg);
ngx_int_t ngx_http_usage_send_out(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, size_t type_len, ngx_http_usage_out_t *out);
ngx_int_t ngx_http_usage_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, ngx_str_t *message);

/* ngx_http_usage_track.c */
ngx_int_t ngx_http_usage_track_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_usage_trace_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
ngx_int_t ngx_http_usage_trace_id(ngx_http_request_t *r, ngx_str_t *id);
ngx_int_t ngx_http_usage_request_path(ngx_http_request_t *r, ngx_str_t *path);


/*
 * The path of the request line, its query cut off.  nginx noted where the
 * arguments start as it parsed the line (or its %-escapes), so a client
 * request needs no search; a subrequest shares its parent's line but not
 * that note.
 */

static ngx_inline void
ngx_http_usage_cut_query(ngx_http_request_t *r, ngx_str_t *path)
{
    u_char  *q;

    if (r->args_start > path->data
        && r->args_start <= path->data + path->len
        && r->args_start[-1] == '?')
    {
        path->len = r->args_start - 1 - path->data;
        return;
    }

    if (r->args_start == NULL && r == r->main) {
        return;     /* no '?' in the request line */
    }

    q = ngx_strlchr(path->data, path->data + path->len, '?');
    if (q) {
        path->len = q - path->data;
    }
}
ngx_table_elt_t *ngx_http_usage_find_header(ngx_http_request_t *r,
    u_char *name, size_t len);
ngx_int_t ngx_http_usage_trace_handler(ngx_http_request_t *r);

/* ngx_http_usage_filter.c */
ngx_int_t ngx_http_usage_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_http_usage_headers_init(ngx_conf_t *cf,
    ngx_http_usage_loc_conf_t *conf, ngx_http_usage_loc_conf_t *prev);
ngx_uint_t ngx_http_usage_draining(ngx_http_request_t *r);
ngx_int_t ngx_http_usage_error_body(ngx_http_request_t *r,
    const char *code, ngx_str_t *message, ngx_str_t *out);
ngx_int_t ngx_http_usage_add_header(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *value);
ngx_int_t ngx_http_usage_add_header_n(ngx_http_request_t *r, u_char *key,
    size_t len, ngx_str_t *value);

#define ngx_http_usage_add_header_lit(r, name, value)                        \
    ngx_http_usage_add_header_n(r, (u_char *) name, sizeof(name) - 1, value)

/* ngx_http_usage_metrics.c */
ngx_int_t ngx_http_usage_metrics_handler(ngx_http_request_t *r);
void ngx_http_usage_metrics_count(ngx_http_usage_zone_t *zone,
    ngx_http_request_t *r, ngx_uint_t status, int64_t ms);

/* ngx_http_usage_scope.c */
#define NGX_HTTP_USAGE_SCOPE_READ       0
#define NGX_HTTP_USAGE_SCOPE_RECORD     1
#define NGX_HTTP_USAGE_SCOPE_STORE      2

ngx_int_t ngx_http_usage_scope(ngx_http_request_t *r, ngx_str_t *scope);
ngx_int_t ngx_http_usage_scope_store(ngx_http_request_t *r,
    ngx_str_t *scope);
ngx_int_t ngx_http_usage_scope_forbidden(ngx_http_request_t *r,
    ngx_str_t *scope, ngx_uint_t what);


#endif /* _NGX_HTTP_USAGE_MODULE_H_INCLUDED_ */
