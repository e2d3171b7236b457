
/*
 * Trace ids: the configured header if it is a safe id, else a W3C
 * traceparent's, else a new UUID v4; the $usage_trace_id variable that
 * holds it; and the error-log context that ends every line nginx logs
 * for a request in the module's locations with ", trace id: ...".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_id.h"
#include "ngx_http_usage_request.h"
#include "ngx_http_usage_trace.h"


static ngx_uint_t ngx_http_usage_trace_id_valid(ngx_str_t *id);
static ngx_int_t ngx_http_usage_traceparent(ngx_table_elt_t *h,
    ngx_str_t *id);
static void ngx_http_usage_log_context(ngx_http_request_t *r);
static u_char *ngx_http_usage_log_error(ngx_http_request_t *r,
    ngx_http_request_t *sr, u_char *buf, size_t len);


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
