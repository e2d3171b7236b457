
/*
 * Random ids: a per-process generator seeded from the kernel after fork,
 * kernel random bytes, and UUID v4 with its text form.  One concern:
 * where every id the module hands out comes from.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#if (NGX_HTTP_USAGE_HAVE_GETRANDOM)
#include <sys/random.h>
#endif

#include "ngx_http_usage_id.h"


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
