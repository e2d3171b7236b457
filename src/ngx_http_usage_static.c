
/*
 * Answers with an asset embedded in the module: the OpenAPI document and
 * the HTML reference made from it (scripts/embed writes them into
 * ngx_http_usage_assets.c), or any page added to assets/.  They are served
 * from the module's read-only data: no file, no copy.  Like a static file
 * of nginx's, an asset has a strong ETag, and nginx's not_modified filter
 * answers an If-None-Match that names it with a 304.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_request.h"
#include "ngx_http_usage_reply.h"
#include "ngx_http_usage_assets.h"
#include "ngx_http_usage_static.h"


/* the quality of a media range, in thousandths, as it matches a type */
typedef struct {
    ngx_uint_t                   q;
    ngx_uint_t                   specificity;   /* 0: no range matched */
} ngx_http_usage_quality_t;


static void ngx_http_usage_accept_header(ngx_str_t *value,
    ngx_http_usage_quality_t *html, ngx_http_usage_quality_t *json);
static void ngx_http_usage_accept_range(u_char *p, u_char *end,
    ngx_http_usage_quality_t *html, ngx_http_usage_quality_t *json);
static ngx_uint_t ngx_http_usage_accept_q(u_char *p, u_char *end);
static void ngx_http_usage_match_range(ngx_str_t *type, ngx_str_t *sub,
    const char *want_type, const char *want_sub, ngx_uint_t q,
    ngx_http_usage_quality_t *best);


ngx_int_t
ngx_http_usage_send_asset(ngx_http_request_t *r, ngx_uint_t id)
{
    ngx_table_elt_t         *etag;
    ngx_http_usage_ctx_t    *ctx;
    ngx_http_usage_out_t     out;
    ngx_http_usage_asset_t  *a;

    a = ngx_http_usage_asset(id);

    ctx = ngx_http_usage_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    etag = ngx_list_push(&r->headers_out.headers);
    if (etag == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(etag, sizeof(ngx_table_elt_t));
    etag->hash = 1;
    ngx_str_set(&etag->key, "ETag");
    etag->value = a->etag;
    r->headers_out.etag = etag;

    /* the header filter puts it in place of the API's "default-src
     * 'none'", which would not let a page show its own style */
    ctx->csp = a->csp;
    ctx->own_body = 1;

    out.start = a->body.data;
    out.pos = a->body.data + a->body.len;
    out.end = out.pos;
    out.pool = r->pool;
    out.failed = 0;

    return ngx_http_usage_send_out(r, NGX_HTTP_OK, &a->type, a->type_len,
                                   &out);
}


/*
 * Content negotiation of GET /docs: 1 when the client ranks text/html
 * above application/json (RFC 9110, 12.5.1: the most specific range that
 * matches gives a type its quality), as a browser's Accept does: it
 * gives text/html 1 and JSON only the 0.8 of its range of any type.  A
 * tie, as with that range alone or no Accept, is JSON: what programs have
 * always got.
 */

ngx_uint_t
ngx_http_usage_prefers_html(ngx_http_request_t *r)
{
    ngx_uint_t                 i;
    ngx_list_part_t           *part;
    ngx_table_elt_t           *h;
    ngx_http_usage_quality_t   html, json;

    html.q = 0;
    html.specificity = 0;
    json = html;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Accept") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept",
                               sizeof("Accept") - 1)
               == 0)
        {
            ngx_http_usage_accept_header(&h[i].value, &html, &json);
        }
    }

    return html.q > json.q;
}


/* one Accept header: media ranges separated by commas */

static void
ngx_http_usage_accept_header(ngx_str_t *value, ngx_http_usage_quality_t *html,
    ngx_http_usage_quality_t *json)
{
    u_char  *p, *end, *comma;

    p = value->data;
    end = p + value->len;

    while (p < end) {
        comma = ngx_strlchr(p, end, ',');
        if (comma == NULL) {
            comma = end;
        }

        ngx_http_usage_accept_range(p, comma, html, json);

        p = comma + 1;
    }
}


/* "type/subtype;param=value;q=0.8": what it gives text/html and JSON */

static void
ngx_http_usage_accept_range(u_char *p, u_char *end,
    ngx_http_usage_quality_t *html, ngx_http_usage_quality_t *json)
{
    u_char      *semi, *slash, *last;
    ngx_str_t    type, sub;
    ngx_uint_t   q;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    semi = ngx_strlchr(p, end, ';');
    last = semi ? semi : end;

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    slash = ngx_strlchr(p, last, '/');
    if (slash == NULL || slash == p || slash + 1 == last) {
        return;     /* not a media range */
    }

    type.data = p;
    type.len = slash - p;
    sub.data = slash + 1;
    sub.len = last - sub.data;

    q = semi ? ngx_http_usage_accept_q(semi, end) : 1000;

    ngx_http_usage_match_range(&type, &sub, "text", "html", q, html);
    ngx_http_usage_match_range(&type, &sub, "application", "json", q, json);
}


/* the q parameter among ";a=b;q=0.5" in thousandths: 1000 without one,
 * 0 (not acceptable) when it is not a qvalue */

static ngx_uint_t
ngx_http_usage_accept_q(u_char *p, u_char *end)
{
    ngx_uint_t  q, scale;

    for ( /* void */ ; p && p < end; p = ngx_strlchr(p + 1, end, ';')) {
        p++;

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (end - p < 2 || (p[0] | 0x20) != 'q' || p[1] != '=') {
            continue;
        }

        p += 2;

        if (p == end || (*p != '0' && *p != '1')) {
            return 0;
        }

        q = (*p++ - '0') * 1000;

        if (p < end && *p == '.') {
            p++;

            for (scale = 100; p < end && *p >= '0' && *p <= '9'; p++) {
                if (scale == 0) {
                    return 0;   /* more than 3 digits */
                }

                q += (*p - '0') * scale;
                scale /= 10;
            }
        }

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if ((p < end && *p != ';') || q > 1000) {
            return 0;
        }

        return q;
    }

    return 1000;
}


static void
ngx_http_usage_match_range(ngx_str_t *type, ngx_str_t *sub,
    const char *want_type, const char *want_sub, ngx_uint_t q,
    ngx_http_usage_quality_t *best)
{
    size_t      tl, sl;
    ngx_uint_t  specificity;

    tl = ngx_strlen(want_type);
    sl = ngx_strlen(want_sub);

    if (type->len == 1 && type->data[0] == '*'
        && sub->len == 1 && sub->data[0] == '*')
    {
        specificity = 1;

    } else if (type->len != tl
               || ngx_strncasecmp(type->data, (u_char *) want_type, tl) != 0)
    {
        return;

    } else if (sub->len == 1 && sub->data[0] == '*') {
        specificity = 2;

    } else if (sub->len == sl
               && ngx_strncasecmp(sub->data, (u_char *) want_sub, sl) == 0)
    {
        specificity = 3;

    } else {
        return;
    }

    /* the most specific range decides; among equals, the first */
    if (specificity > best->specificity) {
        best->specificity = specificity;
        best->q = q;
    }
}
