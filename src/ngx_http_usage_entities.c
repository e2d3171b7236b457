
/*
 * GET /v1/entities: the entities ranked by their events (sort=events, the
 * default) or their value (sort=value) in since..until, limit rows a
 * page, paged by cursor.  The ranking itself is ngx_http_usage_rank.c's.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_store.h"
#include "ngx_http_usage_rank.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_number.h"
#include "ngx_http_usage_time.h"
#include "ngx_http_usage_uri.h"
#include "ngx_http_usage_reply.h"
#include "ngx_http_usage_scope.h"
#include "ngx_http_usage_le.h"
#include "ngx_http_usage_cursor.h"
#include "ngx_http_usage_entities.h"


/*
 * A cursor of this list (see ngx_http_usage_cursor.c for the seal):
 *
 *    0   u8    version (2)
 *    1   u8    sort: 0 events, 1 value
 *    2   i64   since, ms (INT64_MIN: none)
 *   10   i64   until, ms (INT64_MAX: none)
 *   18   u64   the page's last row: its events
 *   26   f64   its value
 *   34   u16   the length of its entity id, then the id
 */
#define NGX_HTTP_USAGE_RANK_CURSOR       2
#define NGX_HTTP_USAGE_RANK_CURSOR_HEAD  36

#define NGX_HTTP_USAGE_ENTITIES_ERRORS   4


typedef struct {
    ngx_http_usage_rank_t        q;
    ngx_str_t                    since;        /* as given, or null */
    ngx_str_t                    until;
    ngx_str_t                    errors[NGX_HTTP_USAGE_ENTITIES_ERRORS];
    ngx_uint_t                   nerrors;
} ngx_http_usage_entities_args_t;


static ngx_int_t ngx_http_usage_entities_args(ngx_http_request_t *r,
    ngx_http_usage_entities_args_t *a);
static ngx_int_t ngx_http_usage_entities_time(ngx_http_request_t *r,
    const char *name, const char *error, ngx_http_usage_entities_args_t *a,
    ngx_str_t *value, int64_t *ms);
static ngx_int_t ngx_http_usage_entities_cursor(ngx_http_request_t *r,
    ngx_http_usage_sipkey_t *sipkey, ngx_http_usage_entities_args_t *a,
    ngx_str_t *error);
static ngx_int_t ngx_http_usage_entities_reply(ngx_http_request_t *r,
    ngx_http_usage_sipkey_t *sipkey, ngx_http_usage_entities_args_t *a);
static void ngx_http_usage_entities_filters(u_char *p,
    ngx_http_usage_rank_t *q);


ngx_int_t
ngx_http_usage_entities(ngx_http_request_t *r, ngx_http_usage_zone_t *zone,
    ngx_http_usage_sipkey_t *sipkey)
{
    ngx_int_t                        rc;
    ngx_str_t                        scope, error;
    ngx_http_usage_entities_args_t   a;

    ngx_memzero(&a, sizeof(ngx_http_usage_entities_args_t));

    if (ngx_http_usage_entities_args(r, &a) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (a.nerrors) {
        return ngx_http_usage_bad_request(r, a.errors, a.nerrors);
    }

    /* a scoped key ranks its own entity only: no filter is its filter */
    rc = ngx_http_usage_scope(r, &scope);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        a.q.only = ngx_pcalloc(r->pool, sizeof(ngx_str_t));
        if (a.q.only == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *a.q.only = scope;
    }

    rc = ngx_http_usage_entities_cursor(r, sipkey, &a, &error);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_usage_send_error(r, NGX_HTTP_BAD_REQUEST,
                                         "INVALID_CURSOR", &error);
    }

    if (ngx_http_usage_store_rank(zone, r->pool, &a.q, ngx_http_usage_now())
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_usage_entities_reply(r, sipkey, &a);
}


/* limit, sort, since, until: every error found, in that order */

static ngx_int_t
ngx_http_usage_entities_args(ngx_http_request_t *r,
    ngx_http_usage_entities_args_t *a)
{
    ngx_int_t  rc;
    ngx_str_t  v;

    a->q.limit = 100;
    a->q.since = INT64_MIN;
    a->q.until = INT64_MAX;

    rc = ngx_http_usage_arg(r->pool, &r->args, "limit", &v);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK
        && (ngx_http_usage_parse_decimal(&v, 1000, &a->q.limit) != NGX_OK
            || a->q.limit == 0))
    {
        ngx_str_set(&a->errors[a->nerrors], "limit must be between 1 and 1000");
        a->nerrors++;
    }

    rc = ngx_http_usage_arg(r->pool, &r->args, "sort", &v);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        if (v.len == 5 && ngx_strncmp(v.data, "value", 5) == 0) {
            a->q.by_value = 1;

        } else if (v.len != 6 || ngx_strncmp(v.data, "events", 6) != 0) {
            /* ngx_str_set() is a macro: nerrors moves on after it */
            ngx_str_set(&a->errors[a->nerrors], "sort must be events or value");
            a->nerrors++;
        }
    }

    if (ngx_http_usage_entities_time(r, "since",
                                     "since must be a valid ISO8601 date",
                                     a, &a->since, &a->q.since)
        != NGX_OK
        || ngx_http_usage_entities_time(r, "until",
                                        "until must be a valid ISO8601 date",
                                        a, &a->until, &a->q.until)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_entities_time(ngx_http_request_t *r, const char *name,
    const char *error, ngx_http_usage_entities_args_t *a, ngx_str_t *value,
    int64_t *ms)
{
    ngx_int_t  rc;

    rc = ngx_http_usage_time_arg(r->pool, &r->args, name, value, ms);

    if (rc == NGX_DECLINED) {
        a->errors[a->nerrors].data = (u_char *) error;
        a->errors[a->nerrors].len = ngx_strlen(error);
        a->nerrors++;
    }

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


/*
 * cursor: absent or empty, the first page; else a page's nextCursor, for
 * the same sort, since and until.  NGX_DECLINED: *error says why.
 */

static ngx_int_t
ngx_http_usage_entities_cursor(ngx_http_request_t *r,
    ngx_http_usage_sipkey_t *sipkey, ngx_http_usage_entities_args_t *a,
    ngx_str_t *error)
{
    size_t                      len;
    u_char                      buf[NGX_HTTP_USAGE_CURSOR_MAX];
    u_char                      filters[NGX_HTTP_USAGE_RANK_CURSOR_HEAD];
    uint64_t                    bits;
    ngx_int_t                   rc;
    ngx_str_t                   token;
    ngx_http_usage_rank_row_t  *row;

    rc = ngx_http_usage_arg(r->pool, &r->args, "cursor", &token);

    if (rc != NGX_OK || token.len == 0) {
        return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
    }

    if (ngx_http_usage_cursor_open(sipkey, &token,
                                   NGX_HTTP_USAGE_RANK_CURSOR, buf,
                                   NGX_HTTP_USAGE_RANK_CURSOR_HEAD
                                   + NGX_HTTP_USAGE_ENTITY_MAX_BYTES,
                                   &len, error)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (len < NGX_HTTP_USAGE_RANK_CURSOR_HEAD
        || len != NGX_HTTP_USAGE_RANK_CURSOR_HEAD
                  + (size_t) ngx_http_usage_le_get16(buf + 34))
    {
        ngx_str_set(error, "cursor is malformed");
        return NGX_DECLINED;
    }

    ngx_http_usage_entities_filters(filters, &a->q);

    if (ngx_memcmp(buf, filters, 18) != 0) {
        ngx_str_set(error, "cursor was issued for other filters");
        return NGX_DECLINED;
    }

    row = ngx_palloc(r->pool, sizeof(ngx_http_usage_rank_row_t));
    if (row == NULL) {
        return NGX_ERROR;
    }

    row->count = ngx_http_usage_le_get64(buf + 18);
    bits = ngx_http_usage_le_get64(buf + 26);
    ngx_memcpy(&row->value, &bits, sizeof(double));

    row->entity.len = len - NGX_HTTP_USAGE_RANK_CURSOR_HEAD;
    row->entity.data = ngx_pnalloc(r->pool, row->entity.len + 1);
    if (row->entity.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(row->entity.data, buf + NGX_HTTP_USAGE_RANK_CURSOR_HEAD,
               row->entity.len);

    a->q.after = row;

    return NGX_OK;
}


/* the version, the sort, since and until: what a cursor must match */

static void
ngx_http_usage_entities_filters(u_char *p, ngx_http_usage_rank_t *q)
{
    p[0] = NGX_HTTP_USAGE_RANK_CURSOR;
    p[1] = (u_char) q->by_value;
    ngx_http_usage_le_put64(p + 2, (uint64_t) q->since);
    ngx_http_usage_le_put64(p + 10, (uint64_t) q->until);
}


static ngx_int_t
ngx_http_usage_entities_reply(ngx_http_request_t *r,
    ngx_http_usage_sipkey_t *sipkey, ngx_http_usage_entities_args_t *a)
{
    u_char                     *p, buf[NGX_HTTP_USAGE_CURSOR_MAX];
    uint64_t                    bits;
    ngx_str_t                   token;
    ngx_uint_t                  i;
    ngx_http_usage_out_t        out;
    ngx_http_usage_rank_row_t  *row;

    if (ngx_http_usage_reply_begin(r, &out, 1, 1024) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_usage_out_lit(&out, "{\"entities\":[");

    row = a->q.rows.elts;

    for (i = 0; i < a->q.rows.nelts; i++) {
        if (i) {
            ngx_http_usage_out_lit(&out, ",");
        }

        ngx_http_usage_out_lit(&out, "{\"entityId\":");
        ngx_http_usage_out_string(&out, row[i].entity.data,
                                  row[i].entity.len);
        ngx_http_usage_out_pair(&out, ",\"totalEvents\":", row[i].count);
        ngx_http_usage_out_lit(&out, ",\"totalValue\":");
        ngx_http_usage_out_double(&out, row[i].value);
        ngx_http_usage_out_lit(&out, ",\"lastEventAt\":");
        ngx_http_usage_out_iso(&out, row[i].last);
        ngx_http_usage_out_lit(&out, "}");
    }

    if (a->q.by_value) {
        ngx_http_usage_out_lit(&out, "],\"sort\":\"value\"");

    } else {
        ngx_http_usage_out_lit(&out, "],\"sort\":\"events\"");
    }

    ngx_http_usage_out_lit(&out, ",\"period\":{\"since\":");

    if (a->since.data) {
        ngx_http_usage_out_string(&out, a->since.data, a->since.len);

    } else {
        ngx_http_usage_out_lit(&out, "null");
    }

    ngx_http_usage_out_lit(&out, ",\"until\":");

    if (a->until.data) {
        ngx_http_usage_out_string(&out, a->until.data, a->until.len);

    } else {
        ngx_http_usage_out_lit(&out, "null");
    }

    ngx_http_usage_out_pair(&out, "},\"entitiesRead\":", a->q.entities);
    ngx_http_usage_out_pair(&out, ",\"pagination\":{\"limit\":", a->q.limit);

    if (!a->q.more) {
        ngx_http_usage_out_lit(&out,
                               ",\"nextCursor\":null,\"hasMore\":false}}}");
        return ngx_http_usage_send_json(r, NGX_HTTP_OK, &out);
    }

    row = &row[a->q.rows.nelts - 1];

    ngx_http_usage_entities_filters(buf, &a->q);
    ngx_http_usage_le_put64(buf + 18, row->count);
    ngx_memcpy(&bits, &row->value, sizeof(double));
    ngx_http_usage_le_put64(buf + 26, bits);
    ngx_http_usage_le_put16(buf + 34, (uint16_t) row->entity.len);
    p = ngx_cpymem(buf + NGX_HTTP_USAGE_RANK_CURSOR_HEAD, row->entity.data,
                   row->entity.len);

    token.data = ngx_pnalloc(r->pool, ngx_base64_encoded_length(p - buf + 8));
    if (token.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_usage_cursor_seal(sipkey, buf, p - buf, &token);

    ngx_http_usage_out_lit(&out, ",\"nextCursor\":\"");
    ngx_http_usage_out_raw(&out, token.data, token.len);
    ngx_http_usage_out_lit(&out, "\",\"hasMore\":true}}}");

    return ngx_http_usage_send_json(r, NGX_HTTP_OK, &out);
}
