
/*
 * Answers of the module: JSON bodies from the writer, the error envelope
 * {"error":{"code","message","traceId"}}, the headers the handlers add,
 * and the messages of a 405 and a 413, which nginx's own errors reuse.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_number.h"
#include "ngx_http_usage_request.h"
#include "ngx_http_usage_route.h"
#include "ngx_http_usage_trace.h"
#include "ngx_http_usage_reply.h"


static ngx_int_t ngx_http_usage_error_body_details(ngx_http_request_t *r,
    const char *code, ngx_str_t *message, ngx_str_t *details, ngx_str_t *out);


static ngx_str_t  ngx_http_usage_allow_events =
    ngx_string("GET, HEAD, POST, OPTIONS");
static ngx_str_t  ngx_http_usage_allow_read = ngx_string("GET, HEAD, OPTIONS");
static ngx_str_t  ngx_http_usage_allow_write = ngx_string("POST, OPTIONS");


/* size: what the answer is expected to take (the writer grows past it);
 * a close guess keeps small answers inside the request pool's block */

ngx_int_t
ngx_http_usage_reply_begin(ngx_http_request_t *r, ngx_http_usage_out_t *out,
    ngx_uint_t envelope, size_t size)
{
    if (ngx_http_usage_out_init(out, r->pool, size) != NGX_OK) {
        return NGX_ERROR;
    }

    if (envelope) {
        ngx_http_usage_out_lit(out, "{\"success\":true,\"data\":");
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_usage_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_usage_out_t *out)
{
    ngx_http_usage_ctx_t  *ctx;

    static ngx_str_t  json = ngx_string("application/json; charset=utf-8");

    if (out->failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = ngx_http_usage_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->own_body = 1;

    return ngx_http_usage_send_out(r, status, &json,
                                   sizeof("application/json") - 1, out);
}


/* a whole answer from the writer: type_len is the MIME type's length
 * without its parameters, as nginx keeps it */

ngx_int_t
ngx_http_usage_send_out(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, size_t type_len, ngx_http_usage_out_t *out)
{
    u_char           *p;
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t       cl;
    ngx_table_elt_t  *h;

    r->headers_out.status = status;
    r->headers_out.content_length_n = out->pos - out->start;

    /*
     * The length as a header of its own, as a proxied response has it:
     * nginx's header filter then copies it instead of formatting it with
     * ngx_sprintf() (gzip and the others remove it as they would any).
     * Not for the statuses that must not carry one.
     */
    if (status != NGX_HTTP_NO_CONTENT && status != NGX_HTTP_NOT_MODIFIED) {
        h = ngx_list_push(&r->headers_out.headers);
        p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);

        if (h == NULL || p == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(h, sizeof(ngx_table_elt_t));
        h->hash = 1;
        ngx_str_set(&h->key, "Content-Length");
        h->value.data = p;
        h->value.len = ngx_http_usage_write_uint(p,
                                      r->headers_out.content_length_n) - p;

        r->headers_out.content_length = h;
    }

    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type_len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = out->start;
    b->last = out->pos;
    b->memory = (b->last > b->pos);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    cl.buf = b;
    cl.next = NULL;

    return ngx_http_output_filter(r, &cl);
}


ngx_int_t
ngx_http_usage_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, ngx_str_t *message)
{
    return ngx_http_usage_send_error_details(r, status, code, message, NULL);
}


/* the error envelope with "details": a JSON value, e.g. a batch's bad
 * events */

ngx_int_t
ngx_http_usage_send_error_details(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, ngx_str_t *message, ngx_str_t *details)
{
    ngx_int_t              rc;
    ngx_str_t              body;
    ngx_http_usage_out_t   out;

    /*
     * An error may answer before the body was read (404, 405, 413, 415):
     * it is discarded here, so that keep-alive goes on; a body already
     * read or discarded makes this a no-op.
     */
    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_usage_error_body_details(r, code, message, details, &body)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out.start = body.data;
    out.pos = body.data + body.len;
    out.end = out.pos;
    out.pool = r->pool;
    out.failed = 0;

    return ngx_http_usage_send_json(r, status, &out);
}


ngx_int_t
ngx_http_usage_error_body(ngx_http_request_t *r, const char *code,
    ngx_str_t *message, ngx_str_t *out)
{
    return ngx_http_usage_error_body_details(r, code, message, NULL, out);
}


static ngx_int_t
ngx_http_usage_error_body_details(ngx_http_request_t *r, const char *code,
    ngx_str_t *message, ngx_str_t *details, ngx_str_t *out)
{
    ngx_str_t             trace;
    ngx_http_usage_out_t  o;

    if (ngx_http_usage_trace_id(r, &trace) != NGX_OK) {
        ngx_str_null(&trace);
    }

    if (ngx_http_usage_out_init(&o, r->pool,
                                128 + message->len
                                + (details ? details->len : 0))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_usage_out_lit(&o, "{\"error\":{\"code\":");
    ngx_http_usage_out_string(&o, (u_char *) code, ngx_strlen(code));
    ngx_http_usage_out_lit(&o, ",\"message\":");
    ngx_http_usage_out_string(&o, message->data, message->len);

    if (details) {
        ngx_http_usage_out_lit(&o, ",\"details\":");
        ngx_http_usage_out_raw(&o, details->data, details->len);
    }

    ngx_http_usage_out_lit(&o, ",\"traceId\":");
    ngx_http_usage_out_string(&o, trace.data, trace.len);
    ngx_http_usage_out_lit(&o, "}}");

    if (o.failed) {
        return NGX_ERROR;
    }

    out->data = o.start;
    out->len = o.pos - o.start;

    return NGX_OK;
}


ngx_int_t
ngx_http_usage_add_header(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *value)
{
    return ngx_http_usage_add_header_n(r, key->data, key->len, value);
}


ngx_int_t
ngx_http_usage_add_header_n(ngx_http_request_t *r, u_char *key, size_t len,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = key;
    h->key.len = len;
    h->value = *value;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/*
 * For a 405 on a known route, ours or nginx's own (TRACE is refused by
 * nginx before any handler): the Allow header and the message.
 * NGX_DECLINED: the path is not a route.
 */

ngx_int_t
ngx_http_usage_not_allowed_message(ngx_http_request_t *r, ngx_str_t *msg)
{
    u_char                  *p;
    ngx_str_t               *allow;
    ngx_http_usage_route_t   rt;

    ngx_http_usage_route(r, &rt);

    if (rt.route == NGX_HTTP_USAGE_ROUTE_NONE) {
        return NGX_DECLINED;
    }

    allow = (rt.route == NGX_HTTP_USAGE_ROUTE_EVENTS)
            ? &ngx_http_usage_allow_events
            : (rt.route == NGX_HTTP_USAGE_ROUTE_BATCH)
              ? &ngx_http_usage_allow_write : &ngx_http_usage_allow_read;

    if (ngx_http_usage_add_header_lit(r, "Allow", allow) != NGX_OK) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, r->method_name.len + rt.path.len + 64);
    if (p == NULL) {
        return NGX_ERROR;
    }

    msg->data = p;
    msg->len = ngx_sprintf(p, "Method %V is not allowed on %V; allowed: %V",
                           &r->method_name, &rt.path, allow)
               - p;

    return NGX_OK;
}


/* the 413 message, ours or nginx's own (client_max_body_size) */

ngx_int_t
ngx_http_usage_too_large_message(ngx_http_request_t *r, ngx_str_t *msg)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, 64 + NGX_OFF_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    msg->data = p;
    msg->len = ngx_sprintf(p, "Request body is larger than the limit of %O "
                           "bytes", ngx_http_usage_body_limit(r))
               - p;

    return NGX_OK;
}


ngx_int_t
ngx_http_usage_send_too_large(ngx_http_request_t *r)
{
    ngx_str_t  msg;

    if (ngx_http_usage_too_large_message(r, &msg) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_usage_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                     "PAYLOAD_TOO_LARGE", &msg);
}


/*
 * 429, as for an exhausted quota: the entity reached one of its bounds
 * (NGX_HTTP_USAGE_LIMIT_TYPES: its "types" event types, else its "share"
 * percent of the store).  Only this entity is refused; a bucket that
 * leaves the window, or a type whose events all did, makes room again.
 * "prefix" names the event of a batch.
 */

ngx_int_t
ngx_http_usage_send_entity_limited(ngx_http_request_t *r, ngx_uint_t types,
    ngx_uint_t limit, ngx_uint_t share, ngx_str_t *prefix)
{
    u_char     *p;
    ngx_str_t   msg;

    p = ngx_pnalloc(r->pool, 160 + (prefix ? prefix->len : 0));
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    msg.data = p;

    if (prefix) {
        p = ngx_cpymem(p, prefix->data, prefix->len);
    }

    if (types) {
        p = ngx_sprintf(p, "This entity already has %ui event types, the "
                        "most one entity may have", limit);

    } else {
        p = ngx_sprintf(p, "This entity holds its whole share (%ui%%) of "
                        "the usage store", share);
    }

    msg.len = p - msg.data;

    return ngx_http_usage_send_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                     "ENTITY_LIMIT", &msg);
}


/* 400 VALIDATION_ERROR: every failing rule, joined by ", " */

ngx_int_t
ngx_http_usage_bad_request(ngx_http_request_t *r, ngx_str_t *errors,
    ngx_uint_t n)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   msg;
    ngx_uint_t  i;

    len = 0;
    for (i = 0; i < n; i++) {
        len += errors[i].len + 2;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    msg.data = p;

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
            *p++ = ' ';
        }

        p = ngx_cpymem(p, errors[i].data, errors[i].len);
    }

    msg.len = p - msg.data;

    return ngx_http_usage_send_error(r, NGX_HTTP_BAD_REQUEST,
                                     "VALIDATION_ERROR", &msg);
}
