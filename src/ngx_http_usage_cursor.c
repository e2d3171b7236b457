
/*
 * A cursor is 45 bytes, in URL-safe base64 without padding (60 chars):
 *
 *    0   u8    version (1)
 *    1   i64   createdAt of the page's last event, ms
 *    9   u32   its place among the events of that millisecond
 *   13   16    its uuid
 *   29   u32   a tag of the filters (entityId, eventType) it was listed by
 *   33   u32   the epoch of the ring the place is of
 *   37   u64   SipHash-2-4 of bytes 0 to 36
 *
 * all little-endian.  The key is usage_cursor_key's, which instances
 * share like ssl_session_ticket_key's, or else the zone's own, random.
 * Nothing of a cursor is trusted before its MAC is checked; after that it
 * is only a place, which the store looks up and never follows blindly.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_le.h"
#include "ngx_http_usage_cursor.h"


#define NGX_HTTP_USAGE_CURSOR_VERSION  1
#define NGX_HTTP_USAGE_CURSOR_SIGNED   37     /* then the MAC: 45 bytes */

/* usage_cursor_key: the file is a secret of any length in this range */
#define NGX_HTTP_USAGE_CURSOR_KEY_MIN  16
#define NGX_HTTP_USAGE_CURSOR_KEY_MAX  4096


static uint32_t ngx_http_usage_cursor_tag(ngx_http_usage_sipkey_t *sipkey,
    ngx_str_t *entity, ngx_str_t *type);
static void ngx_http_usage_cursor_tag_part(ngx_http_usage_siphash_t *h,
    ngx_str_t *s);
static ngx_int_t ngx_http_usage_cursor_key_read(ngx_conf_t *cf,
    ngx_str_t *name, u_char *buf, size_t *len);


ngx_int_t
ngx_http_usage_cursor_encode(ngx_http_usage_sipkey_t *sipkey,
    ngx_http_usage_list_key_t *key, ngx_str_t *entity, ngx_str_t *type,
    u_char *dst)
{
    u_char     raw[NGX_HTTP_USAGE_CURSOR_SIGNED];
    ngx_str_t  out;

    raw[0] = NGX_HTTP_USAGE_CURSOR_VERSION;
    ngx_http_usage_le_put64(raw + 1, (uint64_t) key->created);
    ngx_http_usage_le_put32(raw + 9, key->seq);
    ngx_memcpy(raw + 13, key->uuid, 16);
    ngx_http_usage_le_put32(raw + 29, ngx_http_usage_cursor_tag(sipkey, entity,
                                                                type));
    ngx_http_usage_le_put32(raw + 33, key->epoch);

    out.data = dst;
    ngx_http_usage_cursor_seal(sipkey, raw, NGX_HTTP_USAGE_CURSOR_SIGNED,
                               &out);

    return (out.len == NGX_HTTP_USAGE_CURSOR_LEN) ? NGX_OK : NGX_ERROR;
}


/* NGX_DECLINED: refused, *error says why */

ngx_int_t
ngx_http_usage_cursor_decode(ngx_http_usage_sipkey_t *sipkey,
    ngx_str_t *token, ngx_str_t *entity, ngx_str_t *type,
    ngx_http_usage_list_key_t *key, ngx_str_t *error)
{
    u_char  raw[NGX_HTTP_USAGE_CURSOR_SIGNED];
    size_t  len;

    if (token->len != NGX_HTTP_USAGE_CURSOR_LEN) {
        ngx_str_set(error, "cursor is malformed");
        return NGX_DECLINED;
    }

    if (ngx_http_usage_cursor_open(sipkey, token,
                                   NGX_HTTP_USAGE_CURSOR_VERSION, raw,
                                   sizeof(raw), &len, error)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (len != NGX_HTTP_USAGE_CURSOR_SIGNED) {
        ngx_str_set(error, "cursor is malformed");
        return NGX_DECLINED;
    }

    if (ngx_http_usage_le_get32(raw + 29)
        != ngx_http_usage_cursor_tag(sipkey, entity, type))
    {
        ngx_str_set(error, "cursor was issued for other filters");
        return NGX_DECLINED;
    }

    key->created = (int64_t) ngx_http_usage_le_get64(raw + 1);
    key->seq = ngx_http_usage_le_get32(raw + 9);
    ngx_memcpy(key->uuid, raw + 13, 16);
    key->epoch = ngx_http_usage_le_get32(raw + 33);

    return NGX_OK;
}


/*
 * A cursor of any kind: its payload (the kind's version first), then
 * SipHash-2-4 of the payload, in URL-safe base64 without padding.
 * out->data has room for ngx_base64_encoded_length(len + 8).
 */

void
ngx_http_usage_cursor_seal(ngx_http_usage_sipkey_t *sipkey, u_char *payload,
    size_t len, ngx_str_t *out)
{
    u_char     raw[NGX_HTTP_USAGE_CURSOR_MAX + 8];
    ngx_str_t  src;

    ngx_memcpy(raw, payload, len);
    ngx_http_usage_le_put64(raw + len,
                            ngx_http_usage_siphash(sipkey, payload, len));

    src.data = raw;
    src.len = len + 8;

    ngx_encode_base64url(out, &src);
}


/*
 * The payload of a sealed cursor of the given version, at most max bytes,
 * into buf.  Malformed: not the alphabet (padding neither: two spellings
 * of one cursor), too short or long, another version; then the MAC.
 */

ngx_int_t
ngx_http_usage_cursor_open(ngx_http_usage_sipkey_t *sipkey, ngx_str_t *token,
    ngx_uint_t version, u_char *buf, size_t max, size_t *len,
    ngx_str_t *error)
{
    u_char     raw[NGX_HTTP_USAGE_CURSOR_MAX + 8 + 3];
    ngx_str_t  out;

    out.data = raw;
    out.len = 0;

    if (max > NGX_HTTP_USAGE_CURSOR_MAX
        || token->len > ngx_base64_encoded_length(max + 8)
        || ngx_strlchr(token->data, token->data + token->len, '=') != NULL
        || ngx_decode_base64url(&out, token) != NGX_OK
        || out.len < 1 + 8
        || out.len > max + 8
        || raw[0] != version)
    {
        ngx_str_set(error, "cursor is malformed");
        return NGX_DECLINED;
    }

    *len = out.len - 8;

    if (ngx_http_usage_le_get64(raw + *len)
        != ngx_http_usage_siphash(sipkey, raw, *len))
    {
        ngx_str_set(error, "cursor was not issued by this service");
        return NGX_DECLINED;
    }

    ngx_memcpy(buf, raw, *len);

    return NGX_OK;
}


/* the filters, each absent or a name: a domain of its own ("F") */

static uint32_t
ngx_http_usage_cursor_tag(ngx_http_usage_sipkey_t *sipkey, ngx_str_t *entity,
    ngx_str_t *type)
{
    ngx_http_usage_siphash_t  h;

    ngx_http_usage_siphash_init(&h, sipkey);
    ngx_http_usage_siphash_update(&h, (u_char *) "F", 1);
    ngx_http_usage_cursor_tag_part(&h, entity);
    ngx_http_usage_cursor_tag_part(&h, type);

    return (uint32_t) ngx_http_usage_siphash_final(&h);
}


static void
ngx_http_usage_cursor_tag_part(ngx_http_usage_siphash_t *h, ngx_str_t *s)
{
    u_char  len[5];

    if (s == NULL) {
        ngx_http_usage_siphash_update(h, (u_char *) "", 1);
        return;
    }

    len[0] = 1;
    ngx_http_usage_le_put32(len + 1, (uint32_t) s->len);

    ngx_http_usage_siphash_update(h, len, 5);
    ngx_http_usage_siphash_update(h, s->data, s->len);
}


/*
 * usage_cursor_key file: read once, at configuration, like
 * ssl_session_ticket_key.  The secret, whatever its length, is folded
 * into a SipHash key by SipHash under two fixed keys.
 */

char *
ngx_http_usage_cursor_key_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_usage_main_conf_t *umcf = conf;

    size_t                    len;
    u_char                    buf[NGX_HTTP_USAGE_CURSOR_KEY_MAX];
    ngx_str_t                *value, name;
    ngx_http_usage_sipkey_t   fold, *key;

    if (umcf->cursor_key) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_usage_cursor_key_read(cf, &name, buf, &len) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    key = ngx_palloc(cf->pool, sizeof(ngx_http_usage_sipkey_t));
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    fold.k0 = 0x7573616765637572;   /* "usagecur" */
    fold.k1 = 0x736f726b65792d30;   /* "sorkey-0" */
    key->k0 = ngx_http_usage_siphash(&fold, buf, len);

    fold.k1++;
    key->k1 = ngx_http_usage_siphash(&fold, buf, len);

    ngx_explicit_memzero(buf, len);

    umcf->cursor_key = key;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_usage_cursor_key_read(ngx_conf_t *cf, ngx_str_t *name, u_char *buf,
    size_t *len)
{
    ssize_t     n;
    ngx_int_t   rc;
    ngx_file_t  file;

    ngx_memzero(&file, sizeof(ngx_file_t));

    file.name = *name;
    file.log = cf->log;

    file.fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", name);
        return NGX_ERROR;
    }

    /* of a larger file, the first 4096 bytes are the secret */
    n = ngx_read_file(&file, buf, NGX_HTTP_USAGE_CURSOR_KEY_MAX, 0);
    rc = NGX_ERROR;

    if (n == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_read_file_n " \"%V\" failed", name);

    } else if (n < NGX_HTTP_USAGE_CURSOR_KEY_MIN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "usage_cursor_key \"%V\" must hold at least %d "
                           "bytes, it holds %z", name,
                           NGX_HTTP_USAGE_CURSOR_KEY_MIN, n);

    } else {
        *len = (size_t) n;
        rc = NGX_OK;
    }

    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", name);
    }

    return rc;
}
