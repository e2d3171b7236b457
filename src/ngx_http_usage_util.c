
/*
 * Pure helpers: ids, time, UTF-8, JavaScript string rules, URL decoding.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#if (NGX_HTTP_USAGE_HAVE_GETRANDOM)
#include <sys/random.h>
#endif

#include "ngx_http_usage_util.h"


/*
 * The bytes a JSON string holds as they are: printable ASCII but '"'
 * (0x22) and '\\' (0x5c).  Control characters need an escape, and bytes
 * from 0x80 on are checked as UTF-8.  A byte table: one load per byte.
 */

u_char  ngx_http_usage_json_plain_map[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
};


/*
 * xoshiro256** per process.  It is seeded in each worker after fork from
 * the kernel's random source, so two workers never share a sequence (equal
 * trace ids across workers were a real bug in nginx-opentracing).
 */

static uint64_t  ngx_http_usage_rng[4];
static ngx_uint_t  ngx_http_usage_rng_seeded;


static uint64_t
ngx_http_usage_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}


/* bytes from the kernel: getrandom() where it exists, else urandom */

ngx_int_t
ngx_http_usage_random_bytes(void *buf, size_t len)
{
    ssize_t   n;
    ngx_fd_t  fd;

#if (NGX_HTTP_USAGE_HAVE_GETRANDOM)

    if (getrandom(buf, len, 0) == (ssize_t) len) {
        return NGX_OK;
    }

#endif

    fd = ngx_open_file("/dev/urandom", NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    n = read(fd, buf, len);

    (void) ngx_close_file(fd);

    return (n == (ssize_t) len) ? NGX_OK : NGX_ERROR;
}


void
ngx_http_usage_random_init(void)
{
    ngx_uint_t       i;
    ngx_time_t      *tp;
    uint64_t         z;

    if (ngx_http_usage_random_bytes(ngx_http_usage_rng,
                                   sizeof(ngx_http_usage_rng))
        != NGX_OK)
    {
        /* no kernel entropy: derive from pid and time with splitmix64 */
        tp = ngx_timeofday();
        z = ((uint64_t) ngx_pid << 32) ^ (uint64_t) tp->sec ^ tp->msec;

        for (i = 0; i < 4; i++) {
            z += 0x9e3779b97f4a7c15ULL;
            ngx_http_usage_rng[i] = z;
            ngx_http_usage_rng[i] = (ngx_http_usage_rng[i]
                                     ^ (ngx_http_usage_rng[i] >> 30))
                                    * 0xbf58476d1ce4e5b9ULL;
            ngx_http_usage_rng[i] = (ngx_http_usage_rng[i]
                                     ^ (ngx_http_usage_rng[i] >> 27))
                                    * 0x94d049bb133111ebULL;
            ngx_http_usage_rng[i] ^= ngx_http_usage_rng[i] >> 31;
        }
    }

    ngx_http_usage_rng_seeded = 1;
}


uint64_t
ngx_http_usage_random(void)
{
    uint64_t  *s, result, t;

    if (!ngx_http_usage_rng_seeded) {
        ngx_http_usage_random_init();
    }

    s = ngx_http_usage_rng;

    result = ngx_http_usage_rotl(s[1] * 5, 7) * 9;
    t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ngx_http_usage_rotl(s[3], 45);

    return result;
}


void
ngx_http_usage_uuid_v4(u_char id[16])
{
    uint64_t  a, b;

    a = ngx_http_usage_random();
    b = ngx_http_usage_random();

    ngx_memcpy(id, &a, 8);
    ngx_memcpy(id + 8, &b, 8);

    id[6] = (id[6] & 0x0f) | 0x40;      /* version 4 */
    id[8] = (id[8] & 0x3f) | 0x80;      /* RFC 4122 variant */
}


u_char *
ngx_http_usage_uuid_format(u_char *dst, const u_char id[16])
{
    u_char  v[16];

    static u_char  hex[] = "0123456789abcdef";

    /*
     * Every request has one: unrolled, the dashes in place, from a local
     * copy of the bytes (a store through dst might alias id, which would
     * be read again after each one).
     */
    ngx_memcpy(v, id, 16);

#define ngx_http_usage_hex2(i)                                               \
    *dst++ = hex[v[i] >> 4];                                                 \
    *dst++ = hex[v[i] & 0x0f]

    ngx_http_usage_hex2(0);
    ngx_http_usage_hex2(1);
    ngx_http_usage_hex2(2);
    ngx_http_usage_hex2(3);
    *dst++ = '-';
    ngx_http_usage_hex2(4);
    ngx_http_usage_hex2(5);
    *dst++ = '-';
    ngx_http_usage_hex2(6);
    ngx_http_usage_hex2(7);
    *dst++ = '-';
    ngx_http_usage_hex2(8);
    ngx_http_usage_hex2(9);
    *dst++ = '-';
    ngx_http_usage_hex2(10);
    ngx_http_usage_hex2(11);
    ngx_http_usage_hex2(12);
    ngx_http_usage_hex2(13);
    ngx_http_usage_hex2(14);
    ngx_http_usage_hex2(15);

#undef ngx_http_usage_hex2

    return dst;
}


int64_t
ngx_http_usage_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + tp->msec;
}


/* n in exactly width digits, zero-padded (n < 10^width) */

static u_char *
ngx_http_usage_digits_fixed(u_char *dst, ngx_uint_t n, ngx_uint_t width)
{
    u_char  *p;

    p = dst + width;

    while (p > dst) {
        *--p = (u_char) ('0' + n % 10);
        n /= 10;
    }

    return dst + width;
}


/* "00" to "99": numbers are written two digits per division */
static const u_char  ngx_http_usage_pairs[] =
    "00010203040506070809101112131415161718192021222324"
    "25262728293031323334353637383940414243444546474849"
    "50515253545556575859606162636465666768697071727374"
    "75767778798081828384858687888990919293949596979899";

#define ngx_http_usage_two_digits(p, n)                                      \
    *(p)++ = ngx_http_usage_pairs[(n) * 2];                                  \
    *(p)++ = ngx_http_usage_pairs[(n) * 2 + 1]


/* "%uL" without a format string: JSON answers are full of counts */

u_char *
ngx_http_usage_write_uint(u_char *dst, uint64_t n)
{
    size_t     len;
    u_char    *p;
    uint64_t   d;

    static const uint64_t  pow10[] = {
        10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
        10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL,
        100000000000ULL, 1000000000000ULL, 10000000000000ULL,
        100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
        100000000000000000ULL, 1000000000000000000ULL,
        10000000000000000000ULL
    };

    /* the length first, then two digits per division, from the end */
    for (len = 1; len < 20 && n >= pow10[len - 1]; len++) {
        /* void */
    }

    p = dst + len;

    while (n >= 100) {
        d = (n % 100) * 2;
        n /= 100;
        *--p = ngx_http_usage_pairs[d + 1];
        *--p = ngx_http_usage_pairs[d];
    }

    if (n >= 10) {
        *--p = ngx_http_usage_pairs[n * 2 + 1];
        *--p = ngx_http_usage_pairs[n * 2];

    } else {
        *--p = (u_char) ('0' + n);
    }

    return dst + len;
}


u_char *
ngx_http_usage_write_int(u_char *dst, int64_t n)
{
    if (n < 0) {
        *dst++ = '-';
        return ngx_http_usage_write_uint(dst, - (uint64_t) n);
    }

    return ngx_http_usage_write_uint(dst, (uint64_t) n);
}


/* always 24 bytes: times outside years 1970..9999 are clamped */

u_char *
ngx_http_usage_iso_time(u_char *dst, int64_t ms)
{
    u_char      *p;
    time_t       sec, day;
    ngx_tm_t     tm;
    ngx_uint_t   i, t;

    /*
     * "YYYY-MM-DDT" of the last two days written: an answer's times are
     * mostly today's, and the zone's start or a history's points may be
     * another day's.  The time of day is arithmetic, whatever the second.
     * Workers are single-threaded, and the state file's thread writes no
     * times.
     */
    static time_t      cached_day[2] = { -1, -1 };
    static u_char      cached[2][sizeof("YYYY-MM-DDT") - 1];
    static ngx_uint_t  cached_next;

    if (ms < 0) {
        ms = 0;

    } else if (ms > NGX_HTTP_USAGE_TIME_MAX) {
        ms = NGX_HTTP_USAGE_TIME_MAX;
    }

    sec = (time_t) (ms / 1000);
    day = sec / 86400;

    if (day == cached_day[0]) {
        i = 0;

    } else if (day == cached_day[1]) {
        i = 1;

    } else {
        ngx_gmtime(sec, &tm);

        i = cached_next;
        cached_next ^= 1;

        p = ngx_http_usage_digits_fixed(cached[i], tm.ngx_tm_year, 4);
        *p++ = '-';
        p = ngx_http_usage_digits_fixed(p, tm.ngx_tm_mon, 2);
        *p++ = '-';
        p = ngx_http_usage_digits_fixed(p, tm.ngx_tm_mday, 2);
        *p = 'T';

        cached_day[i] = day;
    }

    dst = ngx_cpymem(dst, cached[i], sizeof(cached[0]));

    t = (ngx_uint_t) (sec - day * 86400);

    ngx_http_usage_two_digits(dst, t / 3600);
    *dst++ = ':';
    ngx_http_usage_two_digits(dst, t / 60 % 60);
    *dst++ = ':';
    ngx_http_usage_two_digits(dst, t % 60);
    *dst++ = '.';

    t = (ngx_uint_t) (ms % 1000);
    *dst++ = (u_char) ('0' + t / 100);
    ngx_http_usage_two_digits(dst, t % 100);
    *dst++ = 'Z';

    return dst;
}


/* days since 1970-01-01 of a proleptic Gregorian date */

static int64_t
ngx_http_usage_days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t  era, yoe, doy, doe;    /* era, year/day of era, day of year */

    y -= (m <= 2);
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}


static ngx_int_t
ngx_http_usage_digits(u_char **pp, u_char *end, ngx_uint_t n, int64_t *v)
{
    u_char  *p;

    p = *pp;

    if ((size_t) (end - p) < n) {
        return NGX_ERROR;
    }

    *v = 0;

    while (n--) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        *v = *v * 10 + (*p++ - '0');
    }

    *pp = p;

    return NGX_OK;
}


/*
 * ISO-8601 calendar dates and date-times: YYYY, YYYY-MM, YYYY-MM-DD,
 * YYYYMMDD, then optionally T (or a space) and hh, hh:mm, hh:mm:ss or the
 * basic hhmm, hhmmss, a fraction of a second, and Z or an offset
 * (+hh, +hh:mm, +hhmm).  A date or time without an offset is UTC.
 */

ngx_int_t
ngx_http_usage_parse_iso(u_char *s, size_t len, int64_t *ms)
{
    u_char      *p, *end;
    int64_t      year, mon, day, hour, min, sec, frac, off, oh, om, sign;
    int64_t      days_since_epoch;
    ngx_uint_t   n, extended;

    static const int  days[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30,
                                 31 };

    p = s;
    end = s + len;
    mon = 1;
    day = 1;
    hour = 0;
    min = 0;
    sec = 0;
    frac = 0;
    off = 0;

    if (ngx_http_usage_digits(&p, end, 4, &year) != NGX_OK) {
        return NGX_ERROR;
    }

    if (p < end && *p == '-') {
        p++;
        if (ngx_http_usage_digits(&p, end, 2, &mon) != NGX_OK) {
            return NGX_ERROR;
        }

        if (p < end && *p == '-') {
            p++;
            if (ngx_http_usage_digits(&p, end, 2, &day) != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (p != end) {
            /* a time needs a full date */
            return NGX_ERROR;
        }

    } else if (p < end) {
        if (ngx_http_usage_digits(&p, end, 2, &mon) != NGX_OK
            || ngx_http_usage_digits(&p, end, 2, &day) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (mon < 1 || mon > 12 || day < 1 || day > days[mon - 1]) {
        return NGX_ERROR;
    }

    if (mon == 2 && day == 29
        && !((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
    {
        return NGX_ERROR;
    }

    if (p < end) {
        if (*p != 'T' && *p != 't' && *p != ' ') {
            return NGX_ERROR;
        }

        p++;

        if (ngx_http_usage_digits(&p, end, 2, &hour) != NGX_OK) {
            return NGX_ERROR;
        }

        extended = (p < end && *p == ':');

        if (extended || (p < end && *p >= '0' && *p <= '9')) {
            p += extended;
            if (ngx_http_usage_digits(&p, end, 2, &min) != NGX_OK) {
                return NGX_ERROR;
            }

            if (p < end && ((extended && *p == ':')
                            || (!extended && *p >= '0' && *p <= '9')))
            {
                p += extended;
                if (ngx_http_usage_digits(&p, end, 2, &sec) != NGX_OK) {
                    return NGX_ERROR;
                }

                if (p < end && (*p == '.' || *p == ',')) {
                    p++;

                    /* milliseconds; further digits are truncated, as JS */
                    for (n = 0; p < end && *p >= '0' && *p <= '9'; n++, p++) {
                        if (n < 3) {
                            frac = frac * 10 + (*p - '0');
                        }
                    }

                    if (n == 0) {
                        return NGX_ERROR;
                    }

                    for ( /* void */ ; n < 3; n++) {
                        frac *= 10;
                    }
                }
            }
        }

        if (hour > 23 || min > 59 || sec > 59) {
            return NGX_ERROR;
        }

        if (p < end && (*p == 'Z' || *p == 'z')) {
            p++;

        } else if (p < end && (*p == '+' || *p == '-')) {
            sign = (*p++ == '-') ? -1 : 1;
            om = 0;

            if (ngx_http_usage_digits(&p, end, 2, &oh) != NGX_OK) {
                return NGX_ERROR;
            }

            if (p < end) {
                p += (*p == ':');
                if (ngx_http_usage_digits(&p, end, 2, &om) != NGX_OK) {
                    return NGX_ERROR;
                }
            }

            if (oh > 23 || om > 59) {
                return NGX_ERROR;
            }

            off = sign * (oh * 3600000 + om * 60000);
        }

        if (p != end) {
            return NGX_ERROR;
        }
    }

    days_since_epoch = ngx_http_usage_days_from_civil(year, mon, day);

    *ms = days_since_epoch * 86400000 + hour * 3600000 + min * 60000
          + sec * 1000 + frac - off;

    return NGX_OK;
}


/*
 * One code point of a multi-byte sequence at *p (advanced past it), or
 * NGX_HTTP_USAGE_UTF8_INVALID (*p advanced by one byte at least) for
 * anything RFC 3629 refuses: a continuation or impossible byte first, a
 * continuation byte outside 0x80-0xBF, an overlong form, a surrogate, a
 * code point past U+10FFFF, a truncated sequence.
 *
 * nginx's ngx_utf8_decode() is not used: it takes any byte from 0x80 on
 * as a continuation byte, so "\xc3\xc3" passed it and later broke every
 * answer that held it.  The ranges are those of Unicode's table 3-7: the
 * second byte's range depends on the first, the others are 0x80-0xBF.
 */

uint32_t
ngx_http_usage_utf8_decode(u_char **p, u_char *end)
{
    u_char    *s, lo, hi;
    uint32_t   c;
    ngx_uint_t n;

    s = *p;
    c = *s;
    lo = 0x80;
    hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 1;
        c &= 0x1f;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2;
        lo = (c == 0xe0) ? 0xa0 : 0x80;     /* no overlong */
        hi = (c == 0xed) ? 0x9f : 0xbf;     /* no surrogate */
        c &= 0x0f;

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3;
        lo = (c == 0xf0) ? 0x90 : 0x80;     /* no overlong */
        hi = (c == 0xf4) ? 0x8f : 0xbf;     /* not past U+10FFFF */
        c &= 0x07;

    } else {
        *p = s + 1;
        return NGX_HTTP_USAGE_UTF8_INVALID;
    }

    if ((size_t) (end - s) <= n || s[1] < lo || s[1] > hi) {
        *p = s + 1;
        return NGX_HTTP_USAGE_UTF8_INVALID;
    }

    c = (c << 6) | (s[1] & 0x3f);

    for (s += 2; --n; s++) {
        if (*s < 0x80 || *s > 0xbf) {
            *p = s;
            return NGX_HTTP_USAGE_UTF8_INVALID;
        }

        c = (c << 6) | (*s & 0x3f);
    }

    *p = s;

    return c;
}


ngx_int_t
ngx_http_usage_utf8_valid(u_char *p, size_t len)
{
    u_char  *end;

    end = p + len;

    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }

        if (ngx_http_usage_utf8_decode(&p, end)
            == NGX_HTTP_USAGE_UTF8_INVALID)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


size_t
ngx_http_usage_utf8_chars(u_char *p, size_t len)
{
    size_t   n;
    u_char  *end;

    n = 0;

    for (end = p + len; p < end; p++) {
        n += ((*p & 0xc0) != 0x80);
    }

    return n;
}


static ngx_uint_t
ngx_http_usage_js_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0xa0
           || c == 0x1680 || (c >= 0x2000 && c <= 0x200a)
           || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f
           || c == 0x3000 || c == 0xfeff;
}


/* String.prototype.trim() on valid UTF-8 */

void
ngx_http_usage_js_trim(ngx_str_t *s)
{
    u_char    *p, *end, *q, *r;
    uint32_t   c;

    p = s->data;
    end = p + s->len;

    while (p < end) {
        q = p;
        c = (*p < 0x80) ? *p++ : ngx_http_usage_utf8_decode(&p, end);

        if (!ngx_http_usage_js_space(c)) {
            p = q;
            break;
        }
    }

    while (end > p) {
        q = end - 1;

        while (q > p && (*q & 0xc0) == 0x80) {
            q--;
        }

        r = q;
        c = (*r < 0x80) ? *r : ngx_http_usage_utf8_decode(&r, end);

        if (!ngx_http_usage_js_space(c)) {
            break;
        }

        end = q;
    }

    s->len = end - p;
    s->data = p;
}


/*
 * Trims s in place and reports what is wrong with it as an entity id or
 * event type: empty, control characters, or more than max_chars code
 * points.  s must be valid UTF-8.
 */

ngx_uint_t
ngx_http_usage_check_name(ngx_str_t *s, size_t max_chars)
{
    size_t      i;
    ngx_uint_t  flags;

    /* printable ASCII without spaces: nothing to trim, to refuse or to
     * count twice (an id from a URL or a body mostly is) */
    for (i = 0; i < s->len; i++) {
        if (s->data[i] <= 0x20 || s->data[i] >= 0x7f) {
            break;
        }
    }

    if (i == s->len && i) {
        return (i > max_chars) ? NGX_HTTP_USAGE_NAME_LONG : 0;
    }

    ngx_http_usage_js_trim(s);

    if (s->len == 0) {
        return NGX_HTTP_USAGE_NAME_EMPTY;
    }

    flags = 0;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < 0x20 || s->data[i] == 0x7f) {
            flags |= NGX_HTTP_USAGE_NAME_CONTROL;
            break;
        }
    }

    if (ngx_http_usage_utf8_chars(s->data, s->len) > max_chars) {
        flags |= NGX_HTTP_USAGE_NAME_LONG;
    }

    return flags;
}


static ngx_int_t
ngx_http_usage_hex(u_char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/*
 * %-decoding.  A path segment is decoded as decodeURIComponent() does:
 * a malformed escape or invalid UTF-8 is an error.  A query value is
 * decoded as Express's qs does: '+' is a space and a malformed escape is
 * kept as it is.
 */

static ngx_int_t
ngx_http_usage_unescape(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst,
    ngx_uint_t query)
{
    u_char     *p, *d, *end, high;
    ngx_int_t   hi, lo;

    end = src->data + src->len;
    high = 0;

    for (p = src->data; p < end; p++) {
        if (*p == '%' || (query && *p == '+')) {
            break;
        }

        high |= *p;
    }

    if (p == end) {
        /* nothing to decode, the usual case: the bytes as they are, and
         * plain ASCII is valid UTF-8 */
        *dst = *src;

        if (high < 0x80) {
            return NGX_OK;
        }

        goto done;
    }

    d = ngx_pnalloc(pool, src->len + 1);
    if (d == NULL) {
        return NGX_ERROR;
    }

    dst->data = d;

    for (p = src->data; p < end; p++) {
        if (query && *p == '+') {
            *d++ = ' ';
            continue;
        }

        if (*p != '%') {
            *d++ = *p;
            continue;
        }

        hi = (end - p >= 3) ? ngx_http_usage_hex(p[1]) : -1;
        lo = (end - p >= 3) ? ngx_http_usage_hex(p[2]) : -1;

        if (hi >= 0 && lo >= 0) {
            *d++ = (u_char) (hi << 4 | lo);
            p += 2;
            continue;
        }

        if (!query) {
            return NGX_DECLINED;
        }

        *d++ = *p;
    }

    dst->len = d - dst->data;

done:

    if (!query && ngx_http_usage_utf8_valid(dst->data, dst->len) != NGX_OK) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_usage_unescape_path(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst)
{
    return ngx_http_usage_unescape(pool, src, dst, 0);
}


/*
 * A request path %-decoded whole, %2F as a slash (nginx decodes it so
 * before it removes dot segments and merges slashes), and compared with
 * uri, the path nginx chose the location by, byte by byte as it is
 * decoded: nothing is allocated.  NGX_HTTP_USAGE_PATH_DOTS: a segment is
 * "." or ".." (whatever the comparison); NGX_HTTP_USAGE_PATH_OTHER: the
 * decoded path is not uri.  A malformed escape, which nginx lets through
 * only after a '#', is taken as it is.
 */

ngx_uint_t
ngx_http_usage_path_check(ngx_str_t *path, ngx_str_t *uri)
{
    u_char      c, *p, *end, *u, *last;
    ngx_int_t   hi, lo;
    ngx_uint_t  same, len, dots;

    p = path->data;
    end = p + path->len;
    u = uri->data;
    last = u + uri->len;

    same = 1;
    len = 0;            /* the current segment's bytes, decoded */
    dots = 0;           /* how many of them are dots */

    while (p < end) {
        c = *p++;

        if (c == '%' && end - p >= 2) {
            hi = ngx_http_usage_hex(p[0]);
            lo = ngx_http_usage_hex(p[1]);

            if (hi >= 0 && lo >= 0) {
                c = (u_char) (hi << 4 | lo);
                p += 2;
            }
        }

        if (c == '/') {
            if (len && len <= 2 && dots == len) {
                return NGX_HTTP_USAGE_PATH_DOTS;
            }

            len = 0;
            dots = 0;

        } else {
            len++;
            dots += (c == '.');
        }

        if (same) {
            if (u < last && *u == c) {
                u++;

            } else {
                same = 0;
            }
        }
    }

    if (len && len <= 2 && dots == len) {
        return NGX_HTTP_USAGE_PATH_DOTS;
    }

    return (same && u == last) ? NGX_HTTP_USAGE_PATH_SAME
                               : NGX_HTTP_USAGE_PATH_OTHER;
}


/*
 * The first value of a query argument, %-decoded as Express's qs does;
 * names are case-sensitive and compared decoded too.  NGX_DECLINED: the
 * argument is absent.
 */

ngx_int_t
ngx_http_usage_arg(ngx_pool_t *pool, ngx_str_t *args, const char *name,
    ngx_str_t *value)
{
    size_t      n;
    u_char     *p, *end, *amp, *eq;
    ngx_str_t   key, raw;

    n = ngx_strlen(name);
    p = args->data;
    end = p + args->len;

    for ( /* void */ ; p < end; p = amp + 1) {
        amp = ngx_strlchr(p, end, '&');
        if (amp == NULL) {
            amp = end;
        }

        eq = ngx_strlchr(p, amp, '=');

        key.data = p;
        key.len = (eq ? eq : amp) - p;

        if (ngx_strlchr(key.data, key.data + key.len, '%')
            || ngx_strlchr(key.data, key.data + key.len, '+'))
        {
            raw = key;
            if (ngx_http_usage_unescape(pool, &raw, &key, 1) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        if (key.len != n || ngx_strncmp(key.data, name, n) != 0) {
            continue;
        }

        raw.data = eq ? eq + 1 : amp;
        raw.len = amp - raw.data;

        if (ngx_http_usage_unescape(pool, &raw, value, 1) != NGX_OK) {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    return NGX_DECLINED;
}


/* a plain decimal: digits only, no sign, spaces or fraction, <= max */

ngx_int_t
ngx_http_usage_parse_decimal(ngx_str_t *s, ngx_uint_t max, ngx_uint_t *value)
{
    size_t      i;
    ngx_uint_t  v;

    if (s->len == 0) {
        return NGX_ERROR;
    }

    v = 0;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < '0' || s->data[i] > '9') {
            return NGX_ERROR;
        }

        /* checked before it can wrap around */
        if (v > (max - (s->data[i] - '0')) / 10) {
            return NGX_ERROR;
        }

        v = v * 10 + (s->data[i] - '0');
    }

    *value = v;

    return NGX_OK;
}
