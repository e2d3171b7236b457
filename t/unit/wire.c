
/*
 * Unit test of ngx_http_usage_wire.c: the record's bytes pinned against a
 * hand-written layout, round trips of typical and edge records, every
 * malformed record with the result the header documents, random buffers,
 * and the origin id's hex.  Each buffer handed to the decoder is a heap
 * block of exactly its size, so that under ASan (SANITIZE=1) a read one
 * byte outside it is a report.
 */


#include "../../src/ngx_http_usage_text.c"
#include "../../src/ngx_http_usage_wire.c"

#include <float.h>
#include <stdlib.h>

#include "tap.h"


#define META_MAX  4096

/* the decoder's metadata limit: META_MAX but where a test says otherwise */
static size_t  meta_max = META_MAX;

#define OK        NGX_OK
#define DONE      NGX_DONE
#define DECLINED  NGX_DECLINED
#define ERROR     NGX_ERROR


/* a record's header fields, written by the test's own code */
typedef struct {
    uint32_t       len;                /* 0: the sum of the lengths */
    uint64_t       seq;
    u_char         flags;
    u_char         reserved;
    uint32_t       el, tl, il, ml;     /* lengths as written */
    int64_t        time;
    int64_t        created;
    uint64_t       value;              /* bits */
    ngx_str_t      entity, type, id, metadata;
} raw_t;


static void
le(u_char *p, uint64_t v, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        p[i] = (u_char) (v >> (8 * i));
    }
}


static uint64_t
bits_of(double d)
{
    uint64_t  b;

    memcpy(&b, &d, 8);
    return b;
}


static u_char *
bytes(u_char *p, ngx_str_t *s)
{
    if (s->len) {
        memcpy(p, s->data, s->len);
    }

    return p + s->len;
}


/* a plain good record, as raw fields */

static raw_t
good(void)
{
    raw_t      r;
    ngx_str_t  e = ngx_string("customer-42"), t = ngx_string("api_request"),
               i = ngx_string("req-1"), m = ngx_string("{\"tokens\":512}");

    ngx_memzero(&r, sizeof(raw_t));
    r.seq = 7;
    r.flags = NGX_HTTP_USAGE_WIRE_TIME;
    r.time = 1796597688313LL;
    r.created = 1796597688400LL;
    r.value = bits_of(1);
    r.entity = e;
    r.type = t;
    r.id = i;
    r.metadata = m;
    r.el = e.len;
    r.tl = t.len;
    r.il = i.len;
    r.ml = m.len;

    return r;
}


/* the record of r at p, independently of the encoder; its size */

static size_t
put(u_char *p, raw_t *r)
{
    size_t  n;

    n = 64 + r->entity.len + r->type.len + r->id.len + r->metadata.len;

    le(p, r->len ? r->len : n, 4);
    le(p + 4, r->seq, 8);
    p[12] = r->flags;
    p[13] = r->reserved;
    le(p + 14, r->el, 2);
    le(p + 16, r->tl, 2);
    le(p + 18, r->il, 2);
    le(p + 20, r->ml, 4);
    memset(p + 24, 0xab, 16);
    le(p + 40, (uint64_t) r->time, 8);
    le(p + 48, (uint64_t) r->created, 8);
    le(p + 56, r->value, 8);

    p = bytes(p + 64, &r->entity);
    p = bytes(p, &r->type);
    p = bytes(p, &r->id);
    (void) bytes(p, &r->metadata);

    return n;
}


/* a heap copy of exactly n bytes (ASan's redzone right after it) */

static u_char *
exact(const u_char *p, size_t n)
{
    u_char  *b;

    b = malloc(n ? n : 1);
    if (b == NULL) {
        abort();
    }

    memcpy(b, p, n);

    return b;
}


static ngx_uint_t
inside(ngx_str_t *s, u_char *buf, size_t len)
{
    return s->data >= buf && s->data + s->len <= buf + len;
}


static ngx_int_t
decode(u_char *buf, size_t len, ngx_http_usage_record_t *rec,
    uint64_t *seq)
{
    ngx_http_usage_wire_t  w;

    ngx_http_usage_wire_init(&w, buf, len, meta_max);

    return ngx_http_usage_wire_next(&w, rec, seq);
}


/* what, with bytes outside printable ASCII as \xNN: a diag stays a line */

static const char *
printable(const char *what)
{
    u_char  *p;

    static u_char  buf[256];

    for (p = buf; *what && p < buf + sizeof(buf) - 5; what++) {
        if (*what >= 0x20 && *what < 0x7f) {
            *p++ = *what;

        } else {
            p += sprintf((char *) p, "\\x%02x", (u_char) *what);
        }
    }

    *p = '\0';

    return (const char *) buf;
}


/*
 * The record r between two good ones: the walk gives OK, want, OK, DONE,
 * and the good ones decode whole
 */

static ngx_uint_t
sandwich(raw_t *r, ngx_int_t want, const char *what)
{
    u_char                   *buf, tmp[8192];
    size_t                    n;
    uint64_t                  seq;
    ngx_int_t                 rc[4];
    ngx_uint_t                i, ok;
    raw_t                     g;
    ngx_http_usage_wire_t     w;
    ngx_http_usage_record_t   rec;

    g = good();
    n = put(tmp, &g);
    n += put(tmp + n, r);
    n += put(tmp + n, &g);

    buf = exact(tmp, n);
    ngx_http_usage_wire_init(&w, buf, n, meta_max);
    ok = 1;

    for (i = 0; i < 4; i++) {
        rc[i] = ngx_http_usage_wire_next(&w, &rec, &seq);

        if (i != 1 && rc[i] == OK
            && (seq != 7 || rec.entity.len != 11 || !inside(&rec.metadata,
                                                           buf, n)))
        {
            ok = 0;
        }
    }

    free(buf);

    if (rc[0] != OK || rc[1] != want || rc[2] != OK || rc[3] != DONE || !ok)
    {
        tap_diag("%s: %ld %ld %ld %ld", printable(what), (long) rc[0],
                 (long) rc[1], (long) rc[2], (long) rc[3]);
        return 0;
    }

    return 1;
}


static void
test_layout(void)
{
    u_char                   out[128], copy[128], *end;
    ngx_http_usage_record_t  rec;

    static u_char  expected[] = {
        0x48, 0x00, 0x00, 0x00,                             /* len 72 */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,     /* seq */
        0x01,                                               /* flags */
        0x00,                                               /* reserved */
        0x03, 0x00,                                         /* entity_len */
        0x02, 0x00,                                         /* type_len */
        0x01, 0x00,                                         /* id_len */
        0x02, 0x00, 0x00, 0x00,                             /* metadata */
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,     /* uuid */
        0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
        0xf9, 0x27, 0x91, 0x4d, 0xa2, 0x01, 0x00, 0x00,     /* time */
        0x50, 0x28, 0x91, 0x4d, 0xa2, 0x01, 0x00, 0x00,     /* created */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f,     /* 1.5 */
        'e', 'n', 't', 't', 'y', 'i', '{', '}'
    };

    ngx_memzero(&rec, sizeof(rec));
    ngx_memcpy(rec.uuid, "\x00\x11\x22\x33\x44\x55\x66\x77"
                         "\x88\x99\xaa\xbb\xcc\xdd\xee\xff", 16);
    ngx_str_set(&rec.entity, "ent");
    ngx_str_set(&rec.type, "ty");
    ngx_str_set(&rec.id, "i");
    ngx_str_set(&rec.metadata, "{}");
    rec.value = 1.5;
    rec.time = 1796597688313LL;                     /* 0x1a24d9127f9 */
    rec.created = 1796597688400LL;                  /* 0x1a24d912850 */
    rec.has_time = 1;

    memset(out, 0x5a, sizeof(out));
    end = ngx_http_usage_wire_encode(out, &rec, 0x0102030405060708ULL);

    tap_ok(ngx_http_usage_wire_size(&rec) == sizeof(expected)
           && end == out + sizeof(expected)
           && memcmp(out, expected, sizeof(expected)) == 0
           && out[sizeof(expected)] == 0x5a,
           "the bytes of a record are the layout of section 4.2");

    /* a negative time keeps its two's complement bits */
    rec.time = -2;
    rec.created = INT64_MIN;
    rec.has_time = 0;
    ngx_str_null(&rec.id);
    (void) ngx_http_usage_wire_encode(out, &rec, 1);

    tap_ok(memcmp(out + 40, "\xfe\xff\xff\xff\xff\xff\xff\xff", 8) == 0
           && memcmp(out + 48, "\x00\x00\x00\x00\x00\x00\x00\x80", 8) == 0
           && out[12] == 0 && out[18] == 0 && out[19] == 0
           && out[0] == 71,
           "negative times, no client time, no id: their bytes");

    ngx_memcpy(copy, out, sizeof(out));
    ngx_http_usage_wire_set(out, 0x1122334455667788ULL, 0x0a0b0c0d0e0f1011LL);

    tap_ok(memcmp(out + 4, "\x88\x77\x66\x55\x44\x33\x22\x11", 8) == 0
           && memcmp(out + 48, "\x11\x10\x0f\x0e\x0d\x0c\x0b\x0a", 8) == 0
           && memcmp(out, copy, 4) == 0
           && memcmp(out + 12, copy + 12, 48 - 12) == 0
           && memcmp(out + 56, copy + 56, sizeof(out) - 56) == 0,
           "wire_set patches seq and created, nothing else");
}


static ngx_uint_t
same(ngx_str_t *a, ngx_str_t *b, u_char *buf, size_t len)
{
    return a->len == b->len && inside(a, buf, len)
           && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}


/* rec encoded into a block of its size, decoded back whole */

static ngx_uint_t
round_trip(ngx_http_usage_record_t *rec, uint64_t seq, const char *what)
{
    u_char                   *buf, *end;
    size_t                    n;
    uint64_t                  s, s2;
    ngx_int_t                 rc, rc2;
    ngx_uint_t                ok;
    ngx_http_usage_wire_t     w;
    ngx_http_usage_record_t   out, out2;

    n = ngx_http_usage_wire_size(rec);
    if (n == 0) {
        tap_diag("%s: no size", what);
        return 0;
    }

    buf = malloc(n);
    if (buf == NULL) {
        abort();
    }

    end = ngx_http_usage_wire_encode(buf, rec, seq);

    ngx_http_usage_wire_init(&w, buf, n, META_MAX);
    rc = ngx_http_usage_wire_next(&w, &out, &s);
    rc2 = ngx_http_usage_wire_next(&w, &out2, &s2);

    ok = (end == buf + n && rc == OK && rc2 == DONE && s == seq
          && memcmp(out.uuid, rec->uuid, 16) == 0
          && same(&out.entity, &rec->entity, buf, n)
          && same(&out.type, &rec->type, buf, n)
          && same(&out.id, &rec->id, buf, n)
          && same(&out.metadata, &rec->metadata, buf, n)
          && bits_of(out.value) == bits_of(rec->value)
          && out.time == rec->time && out.created == rec->created
          && out.has_time == (rec->has_time != 0)
          && w.flags == (rec->has_time ? NGX_HTTP_USAGE_WIRE_TIME : 0)
          && out.evicted == 0 && out.entity_hash == 0);

    free(buf);

    if (!ok) {
        tap_diag("%s: rc %ld, then %ld", what, (long) rc, (long) rc2);
    }

    return ok;
}


static void
record(ngx_http_usage_record_t *rec)
{
    ngx_uint_t  i;

    ngx_memzero(rec, sizeof(ngx_http_usage_record_t));

    for (i = 0; i < 16; i++) {
        rec->uuid[i] = (u_char) (0xc0 + i);
    }

    ngx_str_set(&rec->entity, "customer-42");
    ngx_str_set(&rec->type, "api_request");
    ngx_str_set(&rec->id, "req-1");
    ngx_str_set(&rec->metadata, "{\"endpoint\":\"/search\",\"tokens\":512}");
    rec->value = 1;
    rec->time = 1796597688313LL;
    rec->created = 1796597688400LL;
    rec->has_time = 1;
}


/* n copies of a 4-byte character: the most bytes a name may have */

static ngx_str_t
emoji(u_char *buf, ngx_uint_t n)
{
    ngx_str_t   s;
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        memcpy(buf + 4 * i, "\xf0\x9f\x98\x80", 4);
    }

    s.data = buf;
    s.len = 4 * n;

    return s;
}


static void
test_round_trips(void)
{
    u_char                   e[1024], t[512], i[512], m[META_MAX];
    ngx_uint_t               k, ok;
    ngx_http_usage_record_t  rec;

    static double  values[] = { -0.0, 0.0, 1e308, -1e308, DBL_MAX,
                                -DBL_MAX, DBL_MIN, 0.1, -3.5, 1e-300 };

    record(&rec);
    tap_ok(round_trip(&rec, 7, "typical"), "round trip: a typical event");

    record(&rec);
    ngx_str_null(&rec.id);
    ngx_str_null(&rec.metadata);
    rec.has_time = 0;
    ok = round_trip(&rec, 1, "no id");
    ngx_str_set(&rec.id, " x ");
    ngx_str_set(&rec.entity, "a b \xc3\xa9");
    ngx_str_set(&rec.type, "t");

    tap_ok(ok && round_trip(&rec, (uint64_t) -1, "untrimmed id"),
           "round trip: no id, no metadata, seq 1; an untrimmed id, "
           "seq 2^64 - 1");

    record(&rec);
    rec.entity = emoji(e, 255);
    rec.type = emoji(t, 100);
    rec.id = emoji(i, 128);

    for (k = 0; k < META_MAX; k++) {
        m[k] = (u_char) (k * 7);
    }

    rec.metadata.data = m;
    rec.metadata.len = META_MAX;

    tap_ok(rec.entity.len == NGX_HTTP_USAGE_ENTITY_MAX_BYTES
           && rec.type.len == NGX_HTTP_USAGE_TYPE_MAX_BYTES
           && rec.id.len == NGX_HTTP_USAGE_ID_MAX_BYTES
           && round_trip(&rec, 99, "max"),
           "round trip: names and id at their limits, metadata at the "
           "caller's, every byte value in it");

    record(&rec);
    ok = 1;

    for (k = 0; k < sizeof(values) / sizeof(values[0]); k++) {
        rec.value = values[k];
        ok &= round_trip(&rec, 3, "value");
    }

    memcpy(&rec.value, "\x01\0\0\0\0\0\0\0", 8);      /* a subnormal */
    ok &= round_trip(&rec, 3, "subnormal");

    tap_ok(ok, "round trip: -0.0, 1e308, DBL_MAX, DBL_MIN, a subnormal, "
           "bit for bit");

    record(&rec);
    rec.time = 0;
    rec.created = NGX_HTTP_USAGE_TIME_MAX;
    ok = round_trip(&rec, 5, "time 0");
    rec.time = NGX_HTTP_USAGE_TIME_MAX;
    rec.created = 0;

    tap_ok(ok && round_trip(&rec, 5, "time max"),
           "round trip: times 0 and 9999-12-31T23:59:59.999Z");
}


static void
test_size(void)
{
    ngx_uint_t               ok;
    ngx_http_usage_record_t  rec;

    record(&rec);
    rec.entity.len = NGX_HTTP_USAGE_ENTITY_MAX_BYTES + 1;
    ok = (ngx_http_usage_wire_size(&rec) == 0);
    record(&rec);
    rec.type.len = NGX_HTTP_USAGE_TYPE_MAX_BYTES + 1;
    ok &= (ngx_http_usage_wire_size(&rec) == 0);
    record(&rec);
    rec.id.len = NGX_HTTP_USAGE_ID_MAX_BYTES + 1;
    ok &= (ngx_http_usage_wire_size(&rec) == 0);
    record(&rec);
    rec.metadata.len = 0xffffffff - 64 - 27;          /* just fits */
    ok &= (ngx_http_usage_wire_size(&rec) == 0xffffffff);
    rec.metadata.len++;

    tap_ok(ok && ngx_http_usage_wire_size(&rec) == 0,
           "wire_size: 0 past the store's limits or 4 GB");
}


/* the buffer cannot be walked: NGX_ERROR, and again on the next call */

static void
test_errors(void)
{
    u_char                   tmp[512], *buf;
    size_t                   n, k;
    uint64_t                 seq;
    ngx_int_t                rc, rc2;
    ngx_uint_t               ok;
    raw_t                    r;
    ngx_http_usage_wire_t    w;
    ngx_http_usage_record_t  rec;

    ngx_memzero(tmp, sizeof(tmp));
    buf = exact(tmp, 0);
    ngx_http_usage_wire_init(&w, buf, 0, META_MAX);
    rc = ngx_http_usage_wire_next(&w, &rec, &seq);
    rc2 = ngx_http_usage_wire_next(&w, &rec, &seq);
    free(buf);

    tap_ok(rc == DONE && rc2 == DONE, "an empty buffer: done");

    r = good();
    n = put(tmp, &r);
    ok = 1;

    for (k = 1; k < n; k++) {
        buf = exact(tmp, k);                          /* cut short */
        ok &= (decode(buf, k, &rec, &seq) == ERROR);
        free(buf);
    }

    tap_ok(ok, "a record cut anywhere, header or not: error");

    ok = 1;

    for (k = 0; k < 64; k++) {
        r = good();
        n = put(tmp, &r);
        le(tmp, k, 4);                                /* len < 64 */
        buf = exact(tmp, n);
        ok &= (decode(buf, n, &rec, &seq) == ERROR);
        free(buf);
    }

    r = good();
    r.len = 0xffffffff;
    n = put(tmp, &r);
    buf = exact(tmp, n);
    ok &= (decode(buf, n, &rec, &seq) == ERROR);
    free(buf);

    tap_ok(ok, "len below 64, or 4 GB in a small buffer: error");

    /* a good record, then garbage: one record, then the error, sticky */
    r = good();
    n = put(tmp, &r);
    memset(tmp + n, 0xff, 10);
    buf = exact(tmp, n + 10);
    ngx_http_usage_wire_init(&w, buf, n + 10, META_MAX);
    rc = ngx_http_usage_wire_next(&w, &rec, &seq);
    rc2 = ngx_http_usage_wire_next(&w, &rec, &seq);
    ok = (rc == OK && rc2 == ERROR && w.pos == buf + n);
    rc2 = ngx_http_usage_wire_next(&w, &rec, &seq);
    ok &= (rc2 == ERROR && w.pos == buf + n);
    free(buf);

    tap_ok(ok,
           "a record then 10 bytes: the record, then an error that stays");
}


/* a record whose length is sane but whose contents are not an event */

static void
test_declined_lengths(void)
{
    u_char      big[1100];
    ngx_uint_t  ok;
    raw_t       r;

    r = good();
    r.el++;
    ok = sandwich(&r, DECLINED, "entity_len + 1");
    r = good();
    r.ml--;
    ok &= sandwich(&r, DECLINED, "metadata_len - 1");
    r = good();
    r.tl = 0;
    r.il += r.type.len;
    ok &= sandwich(&r, DECLINED, "type bytes counted as id");

    /* sums to len in 32 bits, not in 64; with no metadata limit to
     * refuse the 4 GB first */
    r = good();
    r.metadata.len = 0;
    r.el++;
    r.ml = 0xffffffff;
    meta_max = (size_t) -1;
    ok &= sandwich(&r, DECLINED, "lengths that wrap 32 bits");
    meta_max = META_MAX;

    tap_ok(ok, "lengths that do not sum to len: declined, the walk goes on");

    memset(big, 'a', sizeof(big));
    r = good();
    r.entity.data = big;
    r.entity.len = r.el = NGX_HTTP_USAGE_ENTITY_MAX_BYTES + 1;
    ok = sandwich(&r, DECLINED, "entity over");
    r = good();
    r.type.data = big;
    r.type.len = r.tl = NGX_HTTP_USAGE_TYPE_MAX_BYTES + 1;
    ok &= sandwich(&r, DECLINED, "type over");
    r = good();
    r.id.data = big;
    r.id.len = r.il = NGX_HTTP_USAGE_ID_MAX_BYTES + 1;
    ok &= sandwich(&r, DECLINED, "id over");
    r = good();
    r.metadata.data = big;
    r.metadata.len = r.ml = 1025;
    ok &= sandwich(&r, OK, "metadata binary, under");

    tap_ok(ok, "entity, type, id over the store's limits: declined");

}


/* the caller's metadata limit, exactly and one past it */

static void
test_metadata_limit(void)
{
    u_char                   *buf, meta[META_MAX + 1], tmp[META_MAX + 200];
    size_t                    n;
    uint64_t                  seq;
    ngx_int_t                 rc1, rc2;
    raw_t                     r;
    ngx_http_usage_record_t   rec;

    memset(meta, ' ', sizeof(meta));
    r = good();
    r.metadata.data = meta;
    r.metadata.len = r.ml = META_MAX;
    n = put(tmp, &r);
    buf = exact(tmp, n);
    rc1 = decode(buf, n, &rec, &seq);
    free(buf);

    r.metadata.len = r.ml = META_MAX + 1;
    n = put(tmp, &r);
    buf = exact(tmp, n);
    rc2 = decode(buf, n, &rec, &seq);
    free(buf);

    tap_ok(rc1 == OK && rc2 == DECLINED,
           "metadata of the caller's limit: taken; one byte more: declined");
}


#define ENTITY  0
#define TYPE    1
#define ID      2

/* a good record with one of its strings replaced by s (and its length) */

static ngx_uint_t
with_len(ngx_uint_t field, const char *s, size_t len, ngx_int_t want)
{
    raw_t      r;
    ngx_str_t  v;

    r = good();
    v.data = (u_char *) s;
    v.len = len;

    switch (field) {
    case ENTITY:
        r.entity = v;
        r.el = len;
        break;
    case TYPE:
        r.type = v;
        r.tl = len;
        break;
    default:
        r.id = v;
        r.il = len;
    }

    return sandwich(&r, want, s);
}

#define with(field, s, want)  with_len(field, s, sizeof(s) - 1, want)


static void
test_declined_values(void)
{
    ngx_uint_t  ok;
    raw_t       r;

    r = good();
    r.seq = 0;
    tap_ok(sandwich(&r, DECLINED, "seq 0"), "seq 0: declined");

    r = good();
    r.value = bits_of(NAN);
    ok = sandwich(&r, DECLINED, "NaN");
    r.value = 0x7ff0000000000001ULL;                  /* a signalling NaN */
    ok &= sandwich(&r, DECLINED, "sNaN");
    r.value = bits_of(INFINITY);
    ok &= sandwich(&r, DECLINED, "Inf");
    r.value = bits_of(-INFINITY);
    ok &= sandwich(&r, DECLINED, "-Inf");
    tap_ok(ok, "NaN, +Inf, -Inf values: declined");

    r = good();
    r.time = -1;
    ok = sandwich(&r, DECLINED, "time -1");
    r.time = INT64_MIN;
    ok &= sandwich(&r, DECLINED, "time min");
    r.time = NGX_HTTP_USAGE_TIME_MAX + 1;
    ok &= sandwich(&r, DECLINED, "time max + 1");
    r = good();
    r.created = -1;
    ok &= sandwich(&r, DECLINED, "created -1");
    r.created = INT64_MAX;
    ok &= sandwich(&r, DECLINED, "created max");
    tap_ok(ok, "times and createdAt before 1970 or after 9999, the state "
           "file's range: declined");

    r = good();
    r.flags = 0x04;
    ok = sandwich(&r, DECLINED, "flag 4");
    r.flags = 0x80 | NGX_HTTP_USAGE_WIRE_TIME;
    ok &= sandwich(&r, DECLINED, "flag 0x80");
    r = good();
    r.reserved = 1;
    ok &= sandwich(&r, DECLINED, "reserved");
    r = good();
    r.flags = 0;
    ok &= sandwich(&r, OK, "flags 0");
    tap_ok(ok, "unknown flags or a reserved byte set: declined");
}


static void
test_declined_names(void)
{
    ngx_uint_t  ok;

    ok = with(ENTITY, "\xc3\x28", DECLINED)
         & with(ENTITY, "ab\xc0\xaf", DECLINED)            /* overlong */
         & with(TYPE, "\xed\xa0\x80", DECLINED)            /* surrogate */
         & with(TYPE, "x\xe2\x82", DECLINED)               /* cut short */
         & with(ID, "\xff", DECLINED)
         & with(ID, "id\xf4\x90\x80\x80", DECLINED);       /* > U+10FFFF */
    tap_ok(ok, "invalid UTF-8 in an entity, a type, an id: declined");

    ok = with(ENTITY, "a\x01z", DECLINED)
         & with(ENTITY, "a\nz", DECLINED)
         & with(TYPE, "t\x7f", DECLINED)
         & with(TYPE, "t\x00z", DECLINED)
         & with(ID, "x\ty", DECLINED)
         & with(ID, "\x1b[0m", DECLINED);
    tap_ok(ok, "control characters in an entity, a type, an id: declined");

    ok = with(ENTITY, "", DECLINED)
         & with(TYPE, "", DECLINED)
         & with(ENTITY, " \xe3\x80\x80", DECLINED)
         & with(ENTITY, " lead", DECLINED)
         & with(TYPE, "trail ", DECLINED)
         & with(ENTITY, "\xc2\xa0nbsp", DECLINED)
         & with(ID, "", OK)
         & with(ID, " spaced id ", OK);
    tap_ok(ok, "empty or untrimmed names: declined; ids are not trimmed");
}


/* names past their limits in characters, inside the byte limits */

static void
test_declined_chars(void)
{
    u_char      buf[600];
    ngx_uint_t  ok;

    memset(buf, 'n', sizeof(buf));

    ok = with_len(ENTITY, (char *) buf, 255, OK)
         & with_len(ENTITY, (char *) buf, 256, DECLINED)
         & with_len(TYPE, (char *) buf, 100, OK)
         & with_len(TYPE, (char *) buf, 101, DECLINED)
         & with_len(ID, (char *) buf, 128, OK)
         & with_len(ID, (char *) buf, 129, DECLINED);
    tap_ok(ok, "names and ids of 255, 100, 128 characters: taken; one more: "
           "declined");
}


static void
test_void(void)
{
    u_char                   tmp[128], *buf;
    size_t                   n;
    uint64_t                 seq;
    ngx_int_t                rc;
    ngx_uint_t               ok;
    raw_t                    r;
    ngx_http_usage_wire_t    w;
    ngx_http_usage_record_t  rec;

    ngx_memzero(&r, sizeof(raw_t));
    r.seq = 41;
    r.flags = NGX_HTTP_USAGE_WIRE_VOID;
    r.value = bits_of(NAN);                   /* not looked at */
    r.time = -5;
    n = put(tmp, &r);
    buf = exact(tmp, n);
    ngx_http_usage_wire_init(&w, buf, n, META_MAX);
    rc = ngx_http_usage_wire_next(&w, &rec, &seq);
    free(buf);

    tap_ok(n == 64 && rc == OK && seq == 41
           && w.flags == NGX_HTTP_USAGE_WIRE_VOID && rec.entity.len == 0
           && rec.metadata.len == 0,
           "a void record: its seq, an empty event");

    r.value = 0;
    r.time = 0;
    r.seq = 0;
    ok = sandwich(&r, DECLINED, "void seq 0");
    r = good();
    r.flags = NGX_HTTP_USAGE_WIRE_VOID;
    ok &= sandwich(&r, DECLINED, "void with an event");
    tap_ok(ok, "a void record with seq 0 or with bytes: declined");
}


static uint64_t  rnd_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;

    return rnd_state;
}


/*
 * Walks a buffer to its end: every answer is one of the four, a record
 * taken is a valid event inside the buffer, every step moves on by 64
 * bytes at least, and an error stays
 */

static ngx_uint_t
walk(u_char *buf, size_t len, ngx_uint_t counts[4])
{
    u_char                   *last;
    uint64_t                  seq;
    ngx_int_t                 rc;
    ngx_http_usage_wire_t     w;
    ngx_http_usage_record_t   rec;

    ngx_http_usage_wire_init(&w, buf, len, META_MAX);

    for ( ;; ) {
        last = w.pos;
        rc = ngx_http_usage_wire_next(&w, &rec, &seq);

        switch (rc) {

        case NGX_OK:
            counts[0]++;

            if (seq == 0 || (!(w.flags & NGX_HTTP_USAGE_WIRE_VOID)
                             && (!inside(&rec.entity, buf, len)
                                 || !inside(&rec.type, buf, len)
                                 || !inside(&rec.id, buf, len)
                                 || !inside(&rec.metadata, buf, len)
                                 || rec.entity.len == 0
                                 || rec.type.len == 0
                                 || !isfinite(rec.value)
                                 || !ngx_http_usage_time_ok(rec.time)
                                 || !ngx_http_usage_time_ok(rec.created))))
            {
                return 0;
            }

            break;

        case NGX_DECLINED:
            counts[1]++;
            break;

        case NGX_DONE:
            counts[2]++;
            return w.pos == buf + len;

        case NGX_ERROR:
            counts[3]++;
            return w.pos == last
                   && ngx_http_usage_wire_next(&w, &rec, &seq) == NGX_ERROR;

        default:
            return 0;
        }

        if (w.pos < last + 64 || w.pos > buf + len) {
            return 0;
        }
    }
}


/* a byte of a name: mostly plain, sometimes white space, a control or
 * part of a multi-byte sequence */

static u_char
name_byte(void)
{
    static u_char  bytes[] = "abcdefghij-_.:XYZ0123 \t\x01\x7f\xc3\xa9\xe2"
                             "\x82\xac\xf0\x9f\x98\x80\xed\xa0\xff";

    return bytes[rnd() % (sizeof(bytes) - 1)];
}


/* records with plausible headers and random contents, some lengths off */

static size_t
plausible(u_char *p, size_t room)
{
    size_t    n, k, el, tl, il, ml;
    uint64_t  v;

    el = rnd() % 12;
    tl = rnd() % 12;
    il = (rnd() % 3) ? 0 : rnd() % 12;
    ml = rnd() % 24;
    n = 64 + el + tl + il + ml;

    if (n > room) {
        return 0;
    }

    for (k = 0; k < n; k++) {
        p[k] = (k < 64) ? (u_char) rnd() : name_byte();
    }

    le(p, n + ((rnd() % 8) ? 0 : rnd() % 3 - 1), 4);
    le(p + 4, (rnd() % 16) ? rnd() % 1000 + 1 : 0, 8);
    p[12] = (rnd() % 8) ? rnd() % 2 : (u_char) rnd();
    p[13] = (rnd() % 16) ? 0 : (u_char) rnd();
    le(p + 14, el, 2);
    le(p + 16, tl, 2);
    le(p + 18, il, 2);
    le(p + 20, ml, 4);
    v = (rnd() % 8) ? rnd() % NGX_HTTP_USAGE_TIME_MAX : rnd();
    le(p + 40, v, 8);
    v = (rnd() % 8) ? rnd() % NGX_HTTP_USAGE_TIME_MAX : rnd();
    le(p + 48, v, 8);
    v = (rnd() % 8) ? bits_of((double) (rnd() % 1000) / 7) : rnd();
    le(p + 56, v, 8);

    return n;
}


static size_t
random_buffer(u_char *tmp, size_t size, ngx_uint_t kind)
{
    size_t      n, k, m;
    raw_t       r;

    n = 0;

    switch (kind) {

    case 0:                                     /* noise */
        n = rnd() % 300;

        for (k = 0; k < n; k++) {
            tmp[k] = (u_char) rnd();
        }

        break;

    case 1:                                     /* plausible records */
        for (m = 1 + rnd() % 4; m; m--) {
            n += plausible(tmp + n, size - n);
        }

        break;

    default:                                    /* good ones, mutated */
        for (m = 1 + rnd() % 3; m; m--) {
            r = good();
            r.seq = 1 + rnd() % 100;
            n += put(tmp + n, &r);
        }

        for (m = rnd() % 5; m; m--) {
            tmp[rnd() % n] = (u_char) rnd();
        }

        if (rnd() % 4 == 0) {
            n = rnd() % (n + 1);
        }
    }

    return n;
}


static void
test_random(void)
{
    u_char      tmp[2048], *buf;
    size_t      n;
    ngx_uint_t  i, bad, counts[4];

    ngx_memzero(counts, sizeof(counts));
    bad = 0;

    for (i = 0; i < 100000; i++) {
        n = random_buffer(tmp, sizeof(tmp), i % 3);
        buf = exact(tmp, n);

        if (!walk(buf, n, counts)) {
            if (bad++ < 3) {
                tap_diag("buffer %lu (%lu bytes) walked wrong",
                         (unsigned long) i, (unsigned long) n);
            }
        }

        free(buf);
    }

    tap_ok(bad == 0 && counts[0] && counts[1] && counts[2] && counts[3],
           "100000 random buffers: %lu records, %lu declined, %lu ends, "
           "%lu errors, none read outside", (unsigned long) counts[0],
           (unsigned long) counts[1], (unsigned long) counts[2],
           (unsigned long) counts[3]);
}


static ngx_uint_t
parses(const char *s, size_t len, uint64_t *v)
{
    u_char     *buf;
    ngx_int_t   rc;

    buf = exact((u_char *) s, len);
    rc = ngx_http_usage_origin_parse(buf, len, v);
    free(buf);

    return rc == NGX_OK;
}

#define parses(s, v)  parses(s, sizeof(s) - 1, v)


static void
test_origin(void)
{
    u_char      out[20], *end;
    uint64_t    v, x;
    ngx_uint_t  i, ok;

    memset(out, '#', sizeof(out));
    end = ngx_http_usage_origin_hex(out, 0x8f2c1a9e0b3d4c5fULL);

    tap_ok(end == out + 16 && memcmp(out, "8f2c1a9e0b3d4c5f#", 17) == 0
           && parses("8f2c1a9e0b3d4c5f", &v) && v == 0x8f2c1a9e0b3d4c5fULL,
           "origin: 16 lower-case hex digits, and back");

    ok = 1;

    for (i = 0; i < 1000; i++) {
        x = (i == 0) ? 1 : (i == 1) ? (uint64_t) -1 : rnd();
        ngx_http_usage_origin_hex(out, x);
        ok &= (ngx_http_usage_origin_parse(out, 16, &v) == NGX_OK && v == x);
    }

    tap_ok(ok,
           "origin: 1, 2^64 - 1 and 998 random ids survive the round trip");

    v = 42;
    ok = !parses("8f2c1a9e0b3d4c5", &v)
         && !parses("8f2c1a9e0b3d4c5f0", &v)
         && !parses("", &v)
         && !parses("8F2C1A9E0B3D4C5F", &v)
         && !parses("8f2c1a9e0b3d4c5g", &v)
         && !parses(" 8f2c1a9e0b3d4c5", &v)
         && !parses("0x8f2c1a9e0b3d4c", &v)
         && !parses("+f2c1a9e0b3d4c5f", &v)
         && !parses("8f2c1a9e\0b3d4c5f", &v)
         && !parses("0000000000000000", &v)
         && v == 42;

    tap_ok(ok, "origin: a digit short or over, upper case, non-hex, a "
           "prefix, a NUL, all zeros: refused, the id untouched");
}


int
main(void)
{
    test_layout();
    test_round_trips();
    test_size();
    test_errors();
    test_declined_lengths();
    test_metadata_limit();
    test_declined_values();
    test_declined_names();
    test_declined_chars();
    test_void();
    test_random();
    test_origin();

    return tap_done();
}
