
/*
 * SipHash-2-4 (Aumasson and Bernstein): a keyed 64-bit hash.  Tables whose
 * keys a client chooses (idempotency ids, API keys) hash with a secret key
 * of their own, so that nobody can compute colliding keys offline and
 * flood one chain of a tree or a bucket.
 */


#ifndef _NGX_HTTP_USAGE_SIPHASH_H_INCLUDED_
#define _NGX_HTTP_USAGE_SIPHASH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct {
    uint64_t                     k0;
    uint64_t                     k1;
} ngx_http_usage_sipkey_t;


/* a message fed in pieces: the hash is that of their concatenation */
typedef struct {
    uint64_t                     v0;
    uint64_t                     v1;
    uint64_t                     v2;
    uint64_t                     v3;
    uint64_t                     tail;         /* bytes not yet a word */
    size_t                       len;          /* of the whole message */
} ngx_http_usage_siphash_t;


void ngx_http_usage_siphash_init(ngx_http_usage_siphash_t *h,
    ngx_http_usage_sipkey_t *key);
void ngx_http_usage_siphash_update(ngx_http_usage_siphash_t *h,
    const u_char *p, size_t len);
uint64_t ngx_http_usage_siphash_final(ngx_http_usage_siphash_t *h);
uint64_t ngx_http_usage_siphash(ngx_http_usage_sipkey_t *key,
    const u_char *p, size_t len);
ngx_int_t ngx_http_usage_sipkey_random(ngx_http_usage_sipkey_t *key);


#endif /* _NGX_HTTP_USAGE_SIPHASH_H_INCLUDED_ */
