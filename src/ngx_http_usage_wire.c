
/*
 * The fleet's wire format: an event as a record of a stream entry, and
 * the origin id as text.  Every integer is written and read a byte at a
 * time with shifts, never through a struct laid over the bytes: records
 * are little-endian whatever the host, and sit at any offset of a Redis
 * reply.  Decoding is the input side of a fleet whose other members may
 * be broken or hostile, so it trusts no length before checking it
 * against the buffer, and refuses what the API would never have stored;
 * the state file's reader (ngx_http_usage_rbuf_t) is its model.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <math.h>

#include "ngx_http_usage_le.h"
#include "ngx_http_usage_wire.h"
#include "ngx_http_usage_text.h"
#include "ngx_http_usage_time.h"


/* the API's limits in characters: store.h's byte limits are 4 bytes each */
#define NGX_HTTP_USAGE_WIRE_ENTITY_CHARS  (NGX_HTTP_USAGE_ENTITY_MAX_BYTES / 4)
#define NGX_HTTP_USAGE_WIRE_TYPE_CHARS    (NGX_HTTP_USAGE_TYPE_MAX_BYTES / 4)
#define NGX_HTTP_USAGE_WIRE_ID_CHARS      (NGX_HTTP_USAGE_ID_MAX_BYTES / 4)

#define NGX_HTTP_USAGE_WIRE_FLAGS                                            \
    (NGX_HTTP_USAGE_WIRE_TIME|NGX_HTTP_USAGE_WIRE_VOID)


static ngx_int_t ngx_http_usage_wire_event(ngx_http_usage_record_t *rec);
static ngx_uint_t ngx_http_usage_wire_name(ngx_str_t *name,
    size_t max_chars);
static ngx_uint_t ngx_http_usage_wire_id(ngx_str_t *id);


/* memcpy() of no bytes from NULL (an absent client id) is undefined */

static ngx_inline u_char *
ngx_http_usage_wire_bytes(u_char *p, ngx_str_t *s)
{
    return s->len ? ngx_cpymem(p, s->data, s->len) : p;
}


/*
 * Names and ids longer than the store takes are refused here rather than
 * written for every reader to refuse; the metadata's bound is the
 * caller's, only the u32 of len limits it.
 */

size_t
ngx_http_usage_wire_size(ngx_http_usage_record_t *rec)
{
    uint64_t  size;

    if (rec->entity.len > NGX_HTTP_USAGE_ENTITY_MAX_BYTES
        || rec->type.len > NGX_HTTP_USAGE_TYPE_MAX_BYTES
        || rec->id.len > NGX_HTTP_USAGE_ID_MAX_BYTES)
    {
        return 0;
    }

    size = (uint64_t) NGX_HTTP_USAGE_WIRE_HEADER + rec->entity.len
           + rec->type.len + rec->id.len + (uint64_t) rec->metadata.len;

    if (size > 0xffffffff) {
        return 0;
    }

    return (size_t) size;
}


u_char *
ngx_http_usage_wire_encode(u_char *p, ngx_http_usage_record_t *rec,
    uint64_t seq)
{
    uint64_t  bits;

    ngx_http_usage_le_put32(p, (uint32_t) ngx_http_usage_wire_size(rec));
    ngx_http_usage_le_put64(p + 4, seq);
    p[12] = rec->has_time ? NGX_HTTP_USAGE_WIRE_TIME : 0;
    p[13] = 0;
    ngx_http_usage_le_put16(p + 14, (uint16_t) rec->entity.len);
    ngx_http_usage_le_put16(p + 16, (uint16_t) rec->type.len);
    ngx_http_usage_le_put16(p + 18, (uint16_t) rec->id.len);
    ngx_http_usage_le_put32(p + 20, (uint32_t) rec->metadata.len);
    ngx_memcpy(p + 24, rec->uuid, 16);

    /* two's complement: a negative time keeps its bits */
    ngx_http_usage_le_put64(p + 40, (uint64_t) rec->time);
    ngx_http_usage_le_put64(p + 48, (uint64_t) rec->created);

    /* a double's bits as the integer of the same byte order: IEEE-754
     * binary64, as on every host nginx runs on */
    ngx_memcpy(&bits, &rec->value, sizeof(uint64_t));
    ngx_http_usage_le_put64(p + 56, bits);

    p += NGX_HTTP_USAGE_WIRE_HEADER;
    p = ngx_http_usage_wire_bytes(p, &rec->entity);
    p = ngx_http_usage_wire_bytes(p, &rec->type);
    p = ngx_http_usage_wire_bytes(p, &rec->id);

    return ngx_http_usage_wire_bytes(p, &rec->metadata);
}


/* a withdrawn ack=redis event: the header alone, with its seq */

size_t
ngx_http_usage_wire_void(u_char *p, uint64_t seq)
{
    ngx_memzero(p, NGX_HTTP_USAGE_WIRE_HEADER);

    ngx_http_usage_le_put32(p, NGX_HTTP_USAGE_WIRE_HEADER);
    ngx_http_usage_le_put64(p + 4, seq);
    p[12] = NGX_HTTP_USAGE_WIRE_VOID;

    return NGX_HTTP_USAGE_WIRE_HEADER;
}


/*
 * seq and createdAt are only known under the zone's lock, after the
 * record was encoded outside it: two stores, no re-encoding
 */

void
ngx_http_usage_wire_set(u_char *record, uint64_t seq, int64_t created)
{
    ngx_http_usage_le_put64(record + 4, seq);
    ngx_http_usage_le_put64(record + 48, (uint64_t) created);
}


/* the length and the seq of a record this module wrote (a ship queue's) */

size_t
ngx_http_usage_wire_length(u_char *record)
{
    return ngx_http_usage_le_get32(record);
}


uint64_t
ngx_http_usage_wire_seq(u_char *record)
{
    return ngx_http_usage_le_get64(record + 4);
}


int64_t
ngx_http_usage_wire_created(u_char *record)
{
    return (int64_t) ngx_http_usage_le_get64(record + 48);
}


void
ngx_http_usage_wire_init(ngx_http_usage_wire_t *w, u_char *buf, size_t len,
    size_t metadata_max)
{
    w->pos = buf;
    w->end = buf + len;
    w->metadata_max = metadata_max;
    w->flags = 0;
}


ngx_int_t
ngx_http_usage_wire_next(ngx_http_usage_wire_t *w,
    ngx_http_usage_record_t *rec, uint64_t *seq)
{
    u_char    *p;
    size_t     left;
    uint16_t   el, tl, il;
    uint32_t   len, ml;
    uint64_t   bits;

    p = w->pos;
    left = w->end - p;

    if (left == 0) {
        return NGX_DONE;
    }

    if (left < NGX_HTTP_USAGE_WIRE_HEADER) {
        return NGX_ERROR;
    }

    len = ngx_http_usage_le_get32(p);

    if (len < NGX_HTTP_USAGE_WIRE_HEADER || len > left) {
        /* w->pos stays: the next call fails the same way */
        return NGX_ERROR;
    }

    /* the record's extent is known: whatever it holds, the walk goes on */
    w->pos = p + len;
    w->flags = p[12];

    *seq = ngx_http_usage_le_get64(p + 4);
    el = ngx_http_usage_le_get16(p + 14);
    tl = ngx_http_usage_le_get16(p + 16);
    il = ngx_http_usage_le_get16(p + 18);
    ml = ngx_http_usage_le_get32(p + 20);

    ngx_memzero(rec, sizeof(ngx_http_usage_record_t));

    /* in 64 bits: the sum wraps on no host */
    if ((uint64_t) NGX_HTTP_USAGE_WIRE_HEADER + el + tl + il + ml != len
        || *seq == 0
        || (p[12] & ~NGX_HTTP_USAGE_WIRE_FLAGS)
        || p[13] != 0)
    {
        return NGX_DECLINED;
    }

    if (p[12] & NGX_HTTP_USAGE_WIRE_VOID) {
        /* a withdrawn event: its seq only, rec left empty */
        return (len == NGX_HTTP_USAGE_WIRE_HEADER) ? NGX_OK : NGX_DECLINED;
    }

    if (el > NGX_HTTP_USAGE_ENTITY_MAX_BYTES
        || tl > NGX_HTTP_USAGE_TYPE_MAX_BYTES
        || il > NGX_HTTP_USAGE_ID_MAX_BYTES
        || ml > w->metadata_max)
    {
        return NGX_DECLINED;
    }

    ngx_memcpy(rec->uuid, p + 24, 16);
    rec->time = (int64_t) ngx_http_usage_le_get64(p + 40);
    rec->created = (int64_t) ngx_http_usage_le_get64(p + 48);
    bits = ngx_http_usage_le_get64(p + 56);
    ngx_memcpy(&rec->value, &bits, sizeof(double));
    rec->has_time = (p[12] & NGX_HTTP_USAGE_WIRE_TIME) ? 1 : 0;

    p += NGX_HTTP_USAGE_WIRE_HEADER;
    rec->entity.data = p;
    rec->entity.len = el;
    rec->type.data = p + el;
    rec->type.len = tl;
    rec->id.data = p + el + tl;
    rec->id.len = il;
    rec->metadata.data = p + el + tl + il;
    rec->metadata.len = ml;

    return ngx_http_usage_wire_event(rec);
}


/* what the API and the state file would have refused to store */

static ngx_int_t
ngx_http_usage_wire_event(ngx_http_usage_record_t *rec)
{
    if (!isfinite(rec->value)
        || !ngx_http_usage_time_ok(rec->time)
        || !ngx_http_usage_time_ok(rec->created))
    {
        return NGX_DECLINED;
    }

    if (!ngx_http_usage_wire_name(&rec->entity,
                                  NGX_HTTP_USAGE_WIRE_ENTITY_CHARS)
        || !ngx_http_usage_wire_name(&rec->type,
                                     NGX_HTTP_USAGE_WIRE_TYPE_CHARS)
        || !ngx_http_usage_wire_id(&rec->id))
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * A name as the API stores it: valid UTF-8 that ngx_http_usage_check_name()
 * passes and that its trim leaves as it is (the API keeps names trimmed,
 * so one with white space at an end came from no instance of this module)
 */

static ngx_uint_t
ngx_http_usage_wire_name(ngx_str_t *name, size_t max_chars)
{
    ngx_str_t  s;

    if (ngx_http_usage_utf8_valid(name->data, name->len) != NGX_OK) {
        return 0;
    }

    s = *name;

    return ngx_http_usage_check_name(&s, max_chars) == 0
           && s.len == name->len;
}


/*
 * A client id as the API takes it (ngx_http_usage_check_extras() in
 * body.c): absent, or 1 to 128 characters of valid UTF-8 without control
 * characters, untrimmed
 */

static ngx_uint_t
ngx_http_usage_wire_id(ngx_str_t *id)
{
    size_t  i;

    if (id->len == 0) {
        return 1;
    }

    if (ngx_http_usage_utf8_valid(id->data, id->len) != NGX_OK
        || ngx_http_usage_utf8_chars(id->data, id->len)
           > NGX_HTTP_USAGE_WIRE_ID_CHARS)
    {
        return 0;
    }

    for (i = 0; i < id->len; i++) {
        if (id->data[i] < 0x20 || id->data[i] == 0x7f) {
            return 0;
        }
    }

    return 1;
}


u_char *
ngx_http_usage_origin_hex(u_char *dst, uint64_t origin)
{
    ngx_uint_t  i;

    static u_char  hex[] = "0123456789abcdef";

    for (i = 0; i < NGX_HTTP_USAGE_ORIGIN_HEX; i++) {
        dst[i] = hex[(origin >> (60 - 4 * i)) & 0xf];
    }

    return dst + NGX_HTTP_USAGE_ORIGIN_HEX;
}


/*
 * Only the form the encoder writes, so that an origin has one spelling
 * wherever it is text (the "S:o:<origin>" key, log lines); 0 is no
 * origin: it marks a free slot of the zone's origin table
 */

ngx_int_t
ngx_http_usage_origin_parse(u_char *p, size_t len, uint64_t *origin)
{
    u_char      c;
    uint64_t    v;
    ngx_uint_t  i;

    if (len != NGX_HTTP_USAGE_ORIGIN_HEX) {
        return NGX_ERROR;
    }

    v = 0;

    for (i = 0; i < len; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            v = (v << 4) | (uint64_t) (c - '0');

        } else if (c >= 'a' && c <= 'f') {
            v = (v << 4) | (uint64_t) (c - 'a' + 10);

        } else {
            return NGX_ERROR;
        }
    }

    if (v == 0) {
        return NGX_ERROR;
    }

    *origin = v;

    return NGX_OK;
}
