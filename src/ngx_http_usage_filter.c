
/*
 * Header and body filters of API locations, and graceful drain.
 *
 * Every response of a location with usage_api gets the trace id, the
 * security headers and CORS.  Errors that nginx itself produces there (413
 * from client_max_body_size before the handler runs, 500, 503 from
 * limit_req, ...) would be HTML pages; they are replaced by the JSON error
 * envelope, so that an API client never has to parse HTML.  A 429 also
 * says when to retry.
 *
 * While a drain file exists, or once the worker is shutting down, a
 * response closes its connection: a client behind a balancer then opens
 * its next connection to another instance.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_request.h"
#include "ngx_http_usage_reply.h"
#include "ngx_http_usage_trace.h"
#include "ngx_http_usage_drain.h"
#include "ngx_http_usage_filter.h"


typedef struct {
    ngx_uint_t                   status;
    const char                  *code;
    const char                  *message;
} ngx_http_usage_error_t;


static ngx_int_t ngx_http_usage_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_usage_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_usage_swap_error(ngx_http_request_t *r,
    ngx_http_usage_ctx_t *ctx);
static ngx_uint_t ngx_http_usage_closing(ngx_http_request_t *r,
    ngx_http_usage_loc_conf_t *ulcf);
static ngx_int_t ngx_http_usage_template_add(ngx_array_t *headers,
    ngx_str_t *key, ngx_str_t *value);
static void ngx_http_usage_set_csp(ngx_http_request_t *r, ngx_str_t *csp);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_keyval_t  ngx_http_usage_security_headers[] = {
    { ngx_string("X-Content-Type-Options"), ngx_string("nosniff") },
    { ngx_string("X-Frame-Options"), ngx_string("DENY") },
    { ngx_string("Cache-Control"), ngx_string("no-store") },
    { ngx_string("Referrer-Policy"), ngx_string("no-referrer") },
    { ngx_string("Cross-Origin-Opener-Policy"), ngx_string("same-origin") },
    { ngx_string("Cross-Origin-Resource-Policy"), ngx_string("same-origin") },
    { ngx_string("Content-Security-Policy"),
      ngx_string("default-src 'none'; frame-ancestors 'none'") },
    { ngx_null_string, ngx_null_string }
};


#if (NGX_HTTP_SSL)

static ngx_keyval_t  ngx_http_usage_hsts = {
    ngx_string("Strict-Transport-Security"),
    ngx_string("max-age=31536000; includeSubDomains")
};

#endif


static ngx_keyval_t  ngx_http_usage_vary_origin = {
    ngx_string("Vary"), ngx_string("Origin")
};

static ngx_str_t  ngx_http_usage_acao =
    ngx_string("Access-Control-Allow-Origin");
static ngx_str_t  ngx_http_usage_aceh =
    ngx_string("Access-Control-Expose-Headers");
static ngx_str_t  ngx_http_usage_empty_value = ngx_null_string;


static ngx_http_usage_error_t  ngx_http_usage_errors[] = {
    { 400, "BAD_REQUEST", "Malformed request: the request line, its "
      "%-encoding, a header or the body framing is invalid" },
    { 401, "UNAUTHORIZED", "Authentication is required" },
    { 403, "FORBIDDEN", "Access is forbidden" },
    { 404, "NOT_FOUND", "Not found" },
    { 405, "METHOD_NOT_ALLOWED", "Method not allowed" },
    { 408, "REQUEST_TIMEOUT", "The request took too long" },
    { 411, "LENGTH_REQUIRED", "A Content-Length is required" },
    { 413, "PAYLOAD_TOO_LARGE", NULL },
    { 414, "URI_TOO_LONG", "The request URI is too long" },
    { 415, "UNSUPPORTED_MEDIA_TYPE", "Unsupported media type" },
    { 429, "RATE_LIMITED", "Too many requests" },
    { 494, "REQUEST_HEADER_TOO_LARGE", "A request header is too large" },
    { 500, "INTERNAL_ERROR", "Internal server error" },
    { 501, "UNSUPPORTED_FEATURE", "The server does not support a feature "
      "this request needs" },
    { 502, "BAD_GATEWAY", "Bad gateway" },
    { 503, "SERVICE_UNAVAILABLE", "The service is unavailable" },
    { 504, "GATEWAY_TIMEOUT", "Gateway timeout" },
    { 505, "HTTP_VERSION_NOT_SUPPORTED", "HTTP version not supported" },
    { 507, "STORE_FULL", "The usage store is full" },
    { 0, NULL, NULL }
};


ngx_int_t
ngx_http_usage_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_usage_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_usage_body_filter;

    return NGX_OK;
}


/*
 * The trace id's header (its value set per request), the security
 * headers and CORS, in the order they are sent.  A location shares its
 * parent's when the trace header's name and the CORS origin are the same.
 */

#define NGX_HTTP_USAGE_EXPOSE_POSITION                                       \
    ", x-usage-position, x-usage-position-reached"

ngx_int_t
ngx_http_usage_headers_init(ngx_conf_t *cf, ngx_http_usage_loc_conf_t *conf,
    ngx_http_usage_loc_conf_t *prev)
{
    ngx_str_t      expose;
    ngx_keyval_t  *kv;

    if (prev->headers
        && conf->trace_header_lc.len == prev->trace_header_lc.len
        && ngx_strncmp(conf->trace_header_lc.data, prev->trace_header_lc.data,
                       conf->trace_header_lc.len) == 0
        && conf->cors_origin.len == prev->cors_origin.len
        && ngx_strncmp(conf->cors_origin.data, prev->cors_origin.data,
                       conf->cors_origin.len) == 0)
    {
        conf->headers = prev->headers;
        return NGX_OK;
    }

    conf->headers = ngx_array_create(cf->pool, 12, sizeof(ngx_table_elt_t));
    if (conf->headers == NULL) {
        return NGX_ERROR;
    }


    if (ngx_http_usage_template_add(conf->headers, &conf->trace_header_lc,
                                    &ngx_http_usage_empty_value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (kv = ngx_http_usage_security_headers; kv->key.len; kv++) {
        if (ngx_http_usage_template_add(conf->headers, &kv->key, &kv->value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_usage_template_add(conf->headers, &ngx_http_usage_acao,
                                    &conf->cors_origin)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if ((conf->cors_origin.len != 1 || conf->cors_origin.data[0] != '*')
        && ngx_http_usage_template_add(conf->headers,
                                       &ngx_http_usage_vary_origin.key,
                                       &ngx_http_usage_vary_origin.value)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* what a page's script may read: the trace id, and the fleet's
     * read-your-writes positions (ngx_http_usage_position.c) */
    expose.len = conf->trace_header_lc.len
                 + sizeof(NGX_HTTP_USAGE_EXPOSE_POSITION) - 1;
    expose.data = ngx_pnalloc(cf->pool, expose.len);
    if (expose.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(expose.data, conf->trace_header_lc.data,
                          conf->trace_header_lc.len),
               NGX_HTTP_USAGE_EXPOSE_POSITION,
               sizeof(NGX_HTTP_USAGE_EXPOSE_POSITION) - 1);

    if (ngx_http_usage_template_add(conf->headers, &ngx_http_usage_aceh,
                                    &expose)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_template_add(ngx_array_t *headers, ngx_str_t *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_array_push(headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(h, sizeof(ngx_table_elt_t));
    h->hash = 1;
    h->key = *key;
    h->value = *value;

    return NGX_OK;
}


/*
 * The template into the response's headers: one copy into the list's
 * last part when it has the room (a fresh response's has 20), else one
 * header at a time.  Returns the first header, the trace id's.
 */

static ngx_table_elt_t *
ngx_http_usage_push_headers(ngx_http_request_t *r, ngx_array_t *headers)
{
    ngx_uint_t        i;
    ngx_list_t       *list;
    ngx_list_part_t  *last;
    ngx_table_elt_t  *h, *first, *tpl;

    list = &r->headers_out.headers;
    last = list->last;
    tpl = headers->elts;

    if (list->size == sizeof(ngx_table_elt_t)
        && list->nalloc - last->nelts >= headers->nelts)
    {
        h = (ngx_table_elt_t *) last->elts + last->nelts;
        ngx_memcpy(h, tpl, headers->nelts * sizeof(ngx_table_elt_t));
        last->nelts += headers->nelts;

        return h;
    }

    first = NULL;

    for (i = 0; i < headers->nelts; i++) {
        h = ngx_list_push(list);
        if (h == NULL) {
            return NULL;
        }

        *h = tpl[i];

        if (first == NULL) {
            first = h;
        }
    }

    return first;
}


static ngx_int_t
ngx_http_usage_header_filter(ngx_http_request_t *r)
{
    ngx_str_t                   trace;
    ngx_table_elt_t            *h;
    ngx_http_usage_ctx_t       *ctx;
    ngx_http_usage_loc_conf_t  *ulcf;
    ngx_http_usage_srv_conf_t  *uscf;
    ngx_http_core_srv_conf_t   *cscf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    /* the header then says "Connection: close", and nginx closes after
     * the response */
    if (r->keepalive && ngx_http_usage_closing(r, ulcf)) {
        r->keepalive = 0;
    }

    if (ulcf->api_zone == NULL && ulcf->metrics_zone) {
        /* a scrape's answers carry the trace id, not the API's other
         * headers (CORS has nothing to do here) */
        if (ngx_http_usage_trace_id(r, &trace) == NGX_OK
            && ngx_http_usage_add_header(r, &ulcf->trace_header_lc, &trace)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_next_header_filter(r);
    }

    if (ulcf->api_zone == NULL) {
        /*
         * An error of an API server that nginx answers before the request
         * enters the phases (a bad request line or %-escape, TRACE, a
         * header too large) is the API's error too.  Anything that went
         * through location matching belongs to its own location.
         */
        uscf = ngx_http_get_module_srv_conf(r, ngx_http_usage_module);
        cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);

        if (uscf == NULL || !uscf->has_api || cscf == NULL
            || r->loc_conf != cscf->ctx->loc_conf
            || r->phase_handler != 0
            || r->headers_out.status < NGX_HTTP_BAD_REQUEST)
        {
            return ngx_http_next_header_filter(r);
        }
    }

    ctx = ngx_http_usage_get_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    h = ngx_http_usage_push_headers(r, ulcf->headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_usage_trace_id(r, &trace) == NGX_OK) {
        h->value = trace;

    } else {
        h->hash = 0;        /* not sent */
    }

    if (ctx->csp.len) {
        ngx_http_usage_set_csp(r, &ctx->csp);
    }

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        if (ngx_http_usage_add_header(r, &ngx_http_usage_hsts.key,
                                      &ngx_http_usage_hsts.value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }
#endif

    /* nginx's limit_req: a retry soon succeeds (the module's own 429,
     * ENTITY_LIMIT, would not: it has no Retry-After) */
    if (r->headers_out.status == NGX_HTTP_TOO_MANY_REQUESTS
        && !ctx->own_body)
    {
        if (ngx_http_usage_add_header_lit(r, "Retry-After",
                                          &ulcf->retry_after_value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (r->headers_out.status >= NGX_HTTP_BAD_REQUEST && !ctx->own_body) {
        if (ngx_http_usage_swap_error(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_http_next_header_filter(r);
}


/*
 * A page of the module's own (ngx_http_usage_static.c) has a policy that
 * lets it show its inline style: it replaces the API's, which the
 * template put among the headers just pushed.
 */

static void
ngx_http_usage_set_csp(ngx_http_request_t *r, ngx_str_t *csp)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash
            && h[i].key.len == sizeof("Content-Security-Policy") - 1
            && ngx_strncasecmp(h[i].key.data,
                               (u_char *) "Content-Security-Policy",
                               sizeof("Content-Security-Policy") - 1)
               == 0)
        {
            h[i].value = *csp;
        }
    }
}


/*
 * A worker that is shutting down (QUIT, reload, upgrade) closes the
 * connections of the module's locations after their response (nginx
 * would close them anyway, but its header would still have promised
 * keep-alive); with usage_drain_file, any location closes them while the
 * file exists.
 */

static ngx_uint_t
ngx_http_usage_closing(ngx_http_request_t *r, ngx_http_usage_loc_conf_t *ulcf)
{
    if ((ngx_exiting || ngx_quit || ngx_terminate)
        && (ulcf->api_zone || ulcf->track_zone || ulcf->metrics_zone))
    {
        return 1;
    }

    return ulcf->drain && ngx_http_usage_drain_check(ulcf->drain);
}


/* an error nginx produced: describe it as the API's JSON error */

static ngx_int_t
ngx_http_usage_swap_error(ngx_http_request_t *r, ngx_http_usage_ctx_t *ctx)
{
    u_char                  *p;
    ngx_str_t                msg;
    const char              *code;
    ngx_http_usage_error_t  *e;

    for (e = ngx_http_usage_errors; e->status; e++) {
        if (e->status == r->headers_out.status) {
            break;
        }
    }

    if (e->status == NGX_HTTP_NOT_ALLOWED) {
        code = e->code;

        switch (ngx_http_usage_not_allowed_message(r, &msg)) {
        case NGX_OK:
            break;
        case NGX_DECLINED:
            msg.data = (u_char *) e->message;
            msg.len = ngx_strlen(e->message);
            break;
        default:
            return NGX_ERROR;
        }

    } else if (e->status) {
        code = e->code;

        if (e->message) {
            msg.data = (u_char *) e->message;
            msg.len = ngx_strlen(e->message);

        } else if (ngx_http_usage_too_large_message(r, &msg) != NGX_OK) {
            return NGX_ERROR;      /* 413: the message says what the limit is */
        }

    } else {
        code = (r->headers_out.status < 500) ? "CLIENT_ERROR"
                                              : "INTERNAL_ERROR";

        p = ngx_pnalloc(r->pool, 64);
        if (p == NULL) {
            return NGX_ERROR;
        }

        msg.data = p;
        msg.len = ngx_sprintf(p, "The request failed with status %ui",
                              r->headers_out.status) - p;
    }

    if (ngx_http_usage_error_body(r, code, &msg, &ctx->swap) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->swap_body = 1;

    r->headers_out.content_length_n = ctx->swap.len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_str_set(&r->headers_out.content_type,
                "application/json; charset=utf-8");
    r->headers_out.content_type_len = sizeof("application/json") - 1;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t             *b;
    ngx_chain_t           *cl, out;
    ngx_http_usage_ctx_t  *ctx;

    if (in == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_usage_module);

    if (ctx == NULL || !ctx->swap_body) {
        return ngx_http_next_body_filter(r, in);
    }

    /* swallow nginx's HTML page, send the JSON envelope once instead */

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->swap_sent) {
        return ngx_http_next_body_filter(r, NULL);
    }

    ctx->swap_sent = 1;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->swap.data;
    b->last = ctx->swap.data + ctx->swap.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}
