
/*
 * SipHash-2-4: two compression rounds a word, four finalization rounds.
 * Words are read little-endian whatever the machine, as the reference
 * does, so that a hash never depends on where it was computed.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_siphash.h"
#include "ngx_http_usage_id.h"


#define ngx_http_usage_rotl64(x, b)  (((x) << (b)) | ((x) >> (64 - (b))))

#define ngx_http_usage_sipround(h)                                           \
    (h)->v0 += (h)->v1;                                                      \
    (h)->v1 = ngx_http_usage_rotl64((h)->v1, 13);                            \
    (h)->v1 ^= (h)->v0;                                                      \
    (h)->v0 = ngx_http_usage_rotl64((h)->v0, 32);                            \
    (h)->v2 += (h)->v3;                                                      \
    (h)->v3 = ngx_http_usage_rotl64((h)->v3, 16);                            \
    (h)->v3 ^= (h)->v2;                                                      \
    (h)->v0 += (h)->v3;                                                      \
    (h)->v3 = ngx_http_usage_rotl64((h)->v3, 21);                            \
    (h)->v3 ^= (h)->v0;                                                      \
    (h)->v2 += (h)->v1;                                                      \
    (h)->v1 = ngx_http_usage_rotl64((h)->v1, 17);                            \
    (h)->v1 ^= (h)->v2;                                                      \
    (h)->v2 = ngx_http_usage_rotl64((h)->v2, 32)


static ngx_inline void
ngx_http_usage_siphash_word(ngx_http_usage_siphash_t *h, uint64_t m)
{
    h->v3 ^= m;
    ngx_http_usage_sipround(h);
    ngx_http_usage_sipround(h);
    h->v0 ^= m;
}


void
ngx_http_usage_siphash_init(ngx_http_usage_siphash_t *h,
    ngx_http_usage_sipkey_t *key)
{
    h->v0 = key->k0 ^ 0x736f6d6570736575ULL;
    h->v1 = key->k1 ^ 0x646f72616e646f6dULL;
    h->v2 = key->k0 ^ 0x6c7967656e657261ULL;
    h->v3 = key->k1 ^ 0x7465646279746573ULL;
    h->tail = 0;
    h->len = 0;
}


void
ngx_http_usage_siphash_update(ngx_http_usage_siphash_t *h, const u_char *p,
    size_t len)
{
    uint64_t       m;
    ngx_uint_t     i, fill;
    const u_char  *end;

    end = p + len;
    fill = h->len & 7;
    h->len += len;

    /* complete the word a previous piece began */
    while (fill && p < end) {
        h->tail |= (uint64_t) *p++ << (8 * fill);

        if (++fill == 8) {
            ngx_http_usage_siphash_word(h, h->tail);
            h->tail = 0;
            fill = 0;
        }
    }

    while (end - p >= 8) {
#if (NGX_HAVE_LITTLE_ENDIAN)
        /* one load: the word as the reference reads it */
        ngx_memcpy(&m, p, 8);
#else
        m = 0;

        for (i = 0; i < 8; i++) {
            m |= (uint64_t) p[i] << (8 * i);
        }
#endif

        ngx_http_usage_siphash_word(h, m);
        p += 8;
    }

    for (i = 0; p < end; i++) {
        h->tail |= (uint64_t) *p++ << (8 * i);
    }
}


uint64_t
ngx_http_usage_siphash_final(ngx_http_usage_siphash_t *h)
{
    ngx_http_usage_siphash_word(h, h->tail | ((uint64_t) h->len << 56));

    h->v2 ^= 0xff;
    ngx_http_usage_sipround(h);
    ngx_http_usage_sipround(h);
    ngx_http_usage_sipround(h);
    ngx_http_usage_sipround(h);

    return h->v0 ^ h->v1 ^ h->v2 ^ h->v3;
}


uint64_t
ngx_http_usage_siphash(ngx_http_usage_sipkey_t *key, const u_char *p,
    size_t len)
{
    ngx_http_usage_siphash_t  h;

    ngx_http_usage_siphash_init(&h, key);
    ngx_http_usage_siphash_update(&h, p, len);

    return ngx_http_usage_siphash_final(&h);
}


/* a secret key from the kernel's random source */

ngx_int_t
ngx_http_usage_sipkey_random(ngx_http_usage_sipkey_t *key)
{
    return ngx_http_usage_random_bytes(key, sizeof(ngx_http_usage_sipkey_t));
}
