
/*
 * usage_api_keys: the API keys of a location, from a file of lines
 *
 *     <key> <client> <entity|*> <role>
 *
 * read at configuration time (start and every reload).  The access phase
 * refuses a request without a known key (401); the key's entity and role
 * then scope what the API lets it read and record (see scope.c).
 *
 * Keys are compared as sent, byte for byte: nginx's map compares strings
 * ignoring case, which let "KEY" stand for "key".  The table is hashed
 * with SipHash-2-4 under a secret drawn for each configuration, so that a
 * client can neither aim keys at one bucket nor learn from the time an
 * answer takes how much of a key it guessed: every candidate of the
 * bucket is compared in full, in time that depends only on the length of
 * the key sent.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_keys.h"
#include "ngx_http_usage_siphash.h"
#include "ngx_http_usage_text.h"
#include "ngx_http_usage_request.h"
#include "ngx_http_usage_route.h"


/* a key file larger than this is refused, not read into memory */
#define NGX_HTTP_USAGE_KEYS_FILE_MAX    (64 * 1024 * 1024)


static ngx_http_usage_keys_t *ngx_http_usage_keys_read(ngx_conf_t *cf,
    ngx_str_t *name);
static ngx_int_t ngx_http_usage_keys_parse(ngx_conf_t *cf, ngx_str_t *name,
    u_char *p, u_char *end, ngx_array_t *entries);
static ngx_int_t ngx_http_usage_keys_line(ngx_conf_t *cf, ngx_str_t *name,
    ngx_uint_t line, ngx_str_t *field, ngx_array_t *entries);
static const char *ngx_http_usage_keys_check_name(ngx_str_t *s);
static ngx_int_t ngx_http_usage_keys_build(ngx_conf_t *cf,
    ngx_http_usage_keys_t *keys, ngx_array_t *entries);
static ngx_http_usage_key_t *ngx_http_usage_keys_lookup(
    ngx_http_usage_keys_t *keys, ngx_str_t *value);
static ngx_uint_t ngx_http_usage_keys_equal(ngx_str_t *sent,
    ngx_str_t *key);
static ngx_table_elt_t *ngx_http_usage_keys_header(ngx_http_request_t *r,
    ngx_str_t *name);
static ngx_int_t ngx_http_usage_keys_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_usage_keys_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_usage_keys_vars[] = {

    { ngx_string("usage_api_client"), NULL, ngx_http_usage_keys_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("usage_api_role"), NULL, ngx_http_usage_keys_variable,
      1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t        ngx_http_usage_keys_any = ngx_string("*");
static ngx_table_elt_t  ngx_http_usage_keys_twice;

#define NGX_HTTP_USAGE_KEYS_TWICE  (&ngx_http_usage_keys_twice)


/* usage_api_keys file | off; */

char *
ngx_http_usage_api_keys(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_usage_loc_conf_t *ulcf = conf;

    ngx_str_t                    *value, name;
    ngx_uint_t                    i;
    ngx_http_usage_keys_t        *keys, **k;
    ngx_http_usage_main_conf_t   *umcf;

    if (ulcf->api_keys != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ulcf->api_keys = NULL;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        return "must name a file";
    }

    /* relative to the configuration's directory, as "include" */
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_usage_module);

    if (umcf->api_keys == NULL) {
        umcf->api_keys = ngx_array_create(cf->pool, 1,
                                          sizeof(ngx_http_usage_keys_t *));
        if (umcf->api_keys == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    /* locations that name one file share its table: read once */
    k = umcf->api_keys->elts;
    for (i = 0; i < umcf->api_keys->nelts; i++) {
        if (k[i]->file.len == name.len
            && ngx_strncmp(k[i]->file.data, name.data, name.len) == 0)
        {
            ulcf->api_keys = k[i];
            return NGX_CONF_OK;
        }
    }

    keys = ngx_http_usage_keys_read(cf, &name);
    if (keys == NULL) {
        return NGX_CONF_ERROR;
    }

    k = ngx_array_push(umcf->api_keys);
    if (k == NULL) {
        return NGX_CONF_ERROR;
    }

    *k = keys;
    ulcf->api_keys = keys;

    return NGX_CONF_OK;
}


static ngx_http_usage_keys_t *
ngx_http_usage_keys_read(ngx_conf_t *cf, ngx_str_t *name)
{
    off_t                   size;
    u_char                 *buf;
    ssize_t                 n;
    ngx_int_t               rc;
    ngx_file_t              file;
    ngx_array_t             entries;
    ngx_file_info_t         fi;
    ngx_http_usage_keys_t  *keys;

    ngx_memzero(&file, sizeof(ngx_file_t));

    file.name = *name;
    file.log = cf->log;

    file.fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot read the API keys: "
                           ngx_open_file_n " \"%V\" failed", name);
        return NULL;
    }

    buf = NULL;
    rc = NGX_ERROR;

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot read the API keys: "
                           ngx_fd_info_n " \"%V\" failed", name);
        goto done;
    }

    if (!ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot read the API keys: \"%V\" is not a file",
                           name);
        goto done;
    }

    size = ngx_file_size(&fi);

    if (size > NGX_HTTP_USAGE_KEYS_FILE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the API key file \"%V\" is too large: %O bytes, "
                           "at most %d", name, size,
                           NGX_HTTP_USAGE_KEYS_FILE_MAX);
        goto done;
    }

    buf = ngx_alloc((size_t) size + 1, cf->log);
    if (buf == NULL) {
        goto done;
    }

    n = ngx_read_file(&file, buf, (size_t) size, 0);

    if (n == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot read the API keys: "
                           ngx_read_file_n " \"%V\" failed", name);
        goto done;
    }

    if (n != size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot read the API keys: only %z of %O bytes "
                           "of \"%V\" were read", n, size, name);
        goto done;
    }

    if (ngx_array_init(&entries, cf->temp_pool, 16,
                       sizeof(ngx_http_usage_key_t))
        != NGX_OK)
    {
        goto done;
    }

    rc = ngx_http_usage_keys_parse(cf, name, buf, buf + n, &entries);

done:

    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", name);
    }

    if (buf) {
        /* the keys were copied: no stray copy of them in freed memory */
        ngx_explicit_memzero(buf, (size_t) size);
        ngx_free(buf);
    }

    if (rc != NGX_OK) {
        return NULL;
    }

    keys = ngx_pcalloc(cf->pool, sizeof(ngx_http_usage_keys_t));
    if (keys == NULL) {
        return NULL;
    }

    keys->file = *name;

    if (ngx_http_usage_keys_build(cf, keys, &entries) != NGX_OK) {
        return NULL;
    }

    return keys;
}


/* lines of fields separated by spaces or tabs; "#" starts a comment
 * where a field could start */

static ngx_int_t
ngx_http_usage_keys_parse(ngx_conf_t *cf, ngx_str_t *name, u_char *p,
    u_char *end, ngx_array_t *entries)
{
    u_char      *eol, *last, *start;
    ngx_str_t    field[4];
    ngx_uint_t   line, n;

    for (line = 1; p < end; line++) {

        eol = ngx_strlchr(p, end, LF);
        if (eol == NULL) {
            eol = end;
        }

        last = eol;
        if (last > p && last[-1] == CR) {
            last--;
        }

        n = 0;

        while (p < last) {
            if (*p == ' ' || *p == '\t') {
                p++;
                continue;
            }

            if (*p == '#') {
                break;
            }

            start = p;

            while (p < last && *p != ' ' && *p != '\t') {
                p++;
            }

            if (n < 4) {
                field[n].data = start;
                field[n].len = p - start;
            }

            n++;
        }

        if (n && n != 4) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V:%ui: %ui field%s, 4 expected: "
                               "<key> <client> <entity|*> <role>",
                               name, line, n, n == 1 ? "" : "s");
            return NGX_ERROR;
        }

        if (n
            && ngx_http_usage_keys_line(cf, name, line, field, entries)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (eol == end) {
            break;
        }

        p = eol + 1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_keys_line(ngx_conf_t *cf, ngx_str_t *name, ngx_uint_t line,
    ngx_str_t *field, ngx_array_t *entries)
{
    u_char                *p, *end;
    const char            *err;
    ngx_http_usage_key_t  *k;

    /* never say what the key is: the error log is not a secret */

    if (field[0].len < NGX_HTTP_USAGE_KEY_MIN
        || field[0].len > NGX_HTTP_USAGE_KEY_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V:%ui: a key must be %d to %d bytes of "
                           "printable ASCII without whitespace, this one "
                           "has %uz bytes",
                           name, line, NGX_HTTP_USAGE_KEY_MIN,
                           NGX_HTTP_USAGE_KEY_MAX, field[0].len);
        return NGX_ERROR;
    }

    for (p = field[0].data, end = p + field[0].len; p < end; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V:%ui: a key must be %d to %d bytes of "
                               "printable ASCII without whitespace, byte "
                               "%uz of this one is not",
                               name, line, NGX_HTTP_USAGE_KEY_MIN,
                               NGX_HTTP_USAGE_KEY_MAX,
                               (size_t) (p - field[0].data) + 1);
            return NGX_ERROR;
        }
    }

    err = ngx_http_usage_keys_check_name(&field[1]);
    if (err) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V:%ui: the client name %s",
                           name, line, err);
        return NGX_ERROR;
    }

    if (!(field[2].len == 1 && field[2].data[0] == '*')) {
        err = ngx_http_usage_keys_check_name(&field[2]);
        if (err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V:%ui: the entity %s", name, line, err);
            return NGX_ERROR;
        }
    }

    k = ngx_array_push(entries);
    if (k == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(k, sizeof(ngx_http_usage_key_t));

    if (field[3].len == 5 && ngx_strncmp(field[3].data, "admin", 5) == 0) {
        k->admin = 1;

    } else if (!(field[3].len == 6
                 && ngx_strncmp(field[3].data, "client", 6) == 0))
    {
        /* shorter than any key: a key in the wrong column is not shown */
        if (field[3].len < NGX_HTTP_USAGE_KEY_MIN) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V:%ui: unknown role \"%V\", \"admin\" or "
                               "\"client\" expected", name, line, &field[3]);

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V:%ui: unknown role, \"admin\" or "
                               "\"client\" expected", name, line);
        }

        return NGX_ERROR;
    }

    k->line = line;

    k->key.len = field[0].len;
    k->key.data = ngx_pstrdup(cf->pool, &field[0]);

    k->client.len = field[1].len;
    k->client.data = ngx_pstrdup(cf->pool, &field[1]);

    if (k->key.data == NULL || k->client.data == NULL) {
        return NGX_ERROR;
    }

    if (field[2].len == 1 && field[2].data[0] == '*') {
        k->any = 1;
        k->entity = ngx_http_usage_keys_any;
        return NGX_OK;
    }

    k->entity.len = field[2].len;
    k->entity.data = ngx_pstrdup(cf->pool, &field[2]);

    return k->entity.data ? NGX_OK : NGX_ERROR;
}


/*
 * A client name or an entity id: what the API accepts as an entity id,
 * and exactly that, so that the entity compares equal to the id of a
 * request as the API trims it.
 */

static const char *
ngx_http_usage_keys_check_name(ngx_str_t *s)
{
    u_char      *p, *end;
    ngx_str_t    t;
    ngx_uint_t   flags;

    if (ngx_http_usage_utf8_valid(s->data, s->len) != NGX_OK) {
        return "is not valid UTF-8";
    }

    for (p = s->data, end = p + s->len; p < end; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return "must not contain control characters";
        }
    }

    t = *s;
    flags = ngx_http_usage_check_name(&t, NGX_HTTP_USAGE_KEY_NAME_MAX);

    if (flags & NGX_HTTP_USAGE_NAME_LONG) {
        return "must be 255 characters or less";
    }

    if ((flags & NGX_HTTP_USAGE_NAME_EMPTY) || t.len != s->len) {
        return "must not begin or end with whitespace";
    }

    return NULL;
}


static ngx_int_t
ngx_http_usage_keys_build(ngx_conf_t *cf, ngx_http_usage_keys_t *keys,
    ngx_array_t *entries)
{
    uint64_t               hash;
    ngx_uint_t             i, size;
    ngx_http_usage_key_t  *k, *c, *e, **bucket;

    if (ngx_http_usage_sipkey_random(&keys->secret) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "no random bytes for the hash of \"%V\"",
                           &keys->file);
        return NGX_ERROR;
    }

    /* twice as many buckets as keys: chains of one or two */
    for (size = 1; size < 2 * entries->nelts; size <<= 1) {
        /* void */
    }

    keys->buckets = ngx_pcalloc(cf->pool,
                                size * sizeof(ngx_http_usage_key_t *));
    if (keys->buckets == NULL) {
        return NGX_ERROR;
    }

    keys->mask = size - 1;
    keys->nkeys = entries->nelts;

    e = entries->elts;

    for (i = 0; i < entries->nelts; i++) {

        k = ngx_palloc(cf->pool, sizeof(ngx_http_usage_key_t));
        if (k == NULL) {
            return NGX_ERROR;
        }

        *k = e[i];

        hash = ngx_http_usage_siphash(&keys->secret, k->key.data, k->key.len);
        bucket = &keys->buckets[hash & keys->mask];

        /* configuration time: no need for a constant-time compare */
        for (c = *bucket; c; c = c->next) {
            if (c->key.len == k->key.len
                && ngx_memcmp(c->key.data, k->key.data, k->key.len) == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "%V:%ui: duplicate key, the same as on "
                                   "line %ui", &keys->file, k->line,
                                   c->line);
                return NGX_ERROR;
            }
        }

        k->next = *bucket;
        *bucket = k;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_usage_keys_merge(ngx_conf_t *cf, ngx_http_usage_loc_conf_t *conf,
    ngx_http_usage_loc_conf_t *prev)
{
    u_char  *p;

    ngx_conf_merge_ptr_value(conf->api_keys, prev->api_keys, NULL);
    ngx_conf_merge_str_value(conf->api_key_header, prev->api_key_header,
                             "X-Api-Key");

    if (prev->api_key_challenge.len
        && conf->api_key_header.len == prev->api_key_header.len
        && ngx_strncmp(conf->api_key_header.data, prev->api_key_header.data,
                       conf->api_key_header.len) == 0)
    {
        conf->api_key_challenge = prev->api_key_challenge;
        return NGX_OK;
    }

    /* the header's name is a token (checked when read): no quote in it */
    p = ngx_pnalloc(cf->pool, sizeof("ApiKey header=\"\"") - 1
                              + conf->api_key_header.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    conf->api_key_challenge.data = p;
    conf->api_key_challenge.len = ngx_sprintf(p, "ApiKey header=\"%V\"",
                                              &conf->api_key_header) - p;

    return NGX_OK;
}


ngx_int_t
ngx_http_usage_keys_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_usage_keys_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/*
 * The access phase, where nginx's own access modules are: limit_req
 * (preaccess) has run before and keys on $usage_api_client, which is
 * empty for a request without a known key, and limit_req ignores empty
 * keys.  "satisfy any" lets another access module admit a request
 * without a key.
 */

ngx_int_t
ngx_http_usage_keys_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt         *h;
    ngx_http_core_main_conf_t   *cmcf;
    ngx_http_usage_main_conf_t  *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_usage_module);

    if (umcf->api_keys == NULL) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_usage_keys_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_keys_handler(ngx_http_request_t *r)
{
    ngx_table_elt_t            *h;
    ngx_http_usage_route_t      rt;
    ngx_http_usage_loc_conf_t  *ulcf;

    static ngx_str_t  acrm = ngx_string("Access-Control-Request-Method");

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    if (ulcf->api_keys == NULL) {
        return NGX_DECLINED;
    }

    /* a browser sends a CORS preflight without the key */
    if (r->method == NGX_HTTP_OPTIONS
        && ngx_http_usage_keys_header(r, &acrm) != NULL)
    {
        return NGX_DECLINED;
    }

    if (ngx_http_usage_keys_request(r) != NULL) {
        return NGX_OK;
    }

    /* the dashboard's page holds no data: its script asks for the key */
    if (ulcf->api_zone != NULL
        && (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)))
    {
        ngx_http_usage_route(r, &rt);

        if (rt.route == NGX_HTTP_USAGE_ROUTE_DASHBOARD) {
            return NGX_DECLINED;
        }
    }

    h = ngx_http_usage_keys_header(r, &ulcf->api_key_header);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "usage: %s API key in \"%V\", 401",
                  h == NULL ? "no"
                  : (h == NGX_HTTP_USAGE_KEYS_TWICE ? "more than one"
                                                    : "unknown"),
                  &ulcf->api_key_header);

    /* after an internal redirect the header may be there already */
    if (r->headers_out.www_authenticate == NULL) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "WWW-Authenticate");
        h->value = ulcf->api_key_challenge;
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif

        r->headers_out.www_authenticate = h;
    }

    /* the API's filter makes it the JSON envelope, UNAUTHORIZED */
    return NGX_HTTP_UNAUTHORIZED;
}


/*
 * The key of the request in its location's table, or NULL; looked up
 * once per table (the access phase, the scope checks and the variables
 * ask), again in a location with another table.
 */

ngx_http_usage_key_t *
ngx_http_usage_keys_request(ngx_http_request_t *r)
{
    ngx_table_elt_t            *h;
    ngx_http_usage_ctx_t       *ctx;
    ngx_http_usage_key_t       *key;
    ngx_http_usage_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    if (ulcf->api_keys == NULL) {
        return NULL;
    }

    ctx = ngx_http_usage_get_ctx(r);
    if (ctx == NULL) {
        return NULL;
    }

    if (ctx->api_keys_seen == ulcf->api_keys) {
        return ctx->api_key;
    }

    h = ngx_http_usage_keys_header(r, &ulcf->api_key_header);

    key = (h && h != NGX_HTTP_USAGE_KEYS_TWICE)
          ? ngx_http_usage_keys_lookup(ulcf->api_keys, &h->value) : NULL;

    ctx->api_keys_seen = ulcf->api_keys;
    ctx->api_key = key;

    return key;
}


static ngx_http_usage_key_t *
ngx_http_usage_keys_lookup(ngx_http_usage_keys_t *keys, ngx_str_t *value)
{
    uint64_t               hash;
    ngx_http_usage_key_t  *k, *found;

    /* the bounds are public: no key outside them */
    if (value->len < NGX_HTTP_USAGE_KEY_MIN
        || value->len > NGX_HTTP_USAGE_KEY_MAX)
    {
        return NULL;
    }

    hash = ngx_http_usage_siphash(&keys->secret, value->data, value->len);

    found = NULL;

    /* every candidate, even after a match */
    for (k = keys->buckets[hash & keys->mask]; k; k = k->next) {
        if (ngx_http_usage_keys_equal(value, &k->key)) {
            found = k;
        }
    }

    return found;
}


/*
 * Constant time: as many steps as the key sent has bytes, whatever the
 * stored key and wherever they differ; the stored key is read round
 * (keys are at least 16 bytes), so its length shows neither, and a length
 * that differs is one more difference, not an early exit.
 */

static ngx_uint_t
ngx_http_usage_keys_equal(ngx_str_t *sent, ngx_str_t *key)
{
    size_t             i, j;
    volatile size_t    diff;

    diff = sent->len ^ key->len;

    for (i = 0, j = 0; i < sent->len; i++) {
        diff |= sent->data[i] ^ key->data[j];

        j++;
        j &= (size_t) 0 - (j != key->len);     /* 0 at the end, no branch */
    }

    return diff == 0;
}


/*
 * The request header of that name when it is there once; NULL without
 * it; NGX_HTTP_USAGE_KEYS_TWICE when it is there more than once (which
 * key would count is a matter of the proxies on the way: none does).
 */

static ngx_table_elt_t *
ngx_http_usage_keys_header(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *found;

    found = NULL;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return found;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == name->len
            && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0)
        {
            if (found) {
                return NGX_HTTP_USAGE_KEYS_TWICE;
            }

            found = &h[i];
        }
    }
}


/*
 * usage_entity_scope's answer for a location with usage_api_keys (see
 * scope.c): NGX_OK restricts the request to the entity in scope,
 * NGX_DECLINED lets it use any.  Store-wide data needs role admin; an
 * entity needs the key's entity, or a key for any ("*").  A request
 * without a key (admitted by "satisfy any", or a preflight) gets none.
 */

ngx_int_t
ngx_http_usage_keys_scope(ngx_http_request_t *r, ngx_str_t *scope,
    ngx_uint_t store)
{
    ngx_http_usage_key_t  *key;

    key = ngx_http_usage_keys_request(r);

    if (key == NULL) {
        ngx_str_null(scope);
        return NGX_OK;
    }

    if (store ? key->admin : key->any) {
        return NGX_DECLINED;
    }

    *scope = key->entity;

    return NGX_OK;
}


/* $usage_api_client, $usage_api_role: empty without a known key */

static ngx_int_t
ngx_http_usage_keys_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t              value;
    ngx_http_usage_key_t  *key;

    key = ngx_http_usage_keys_request(r);

    if (key == NULL) {
        ngx_str_null(&value);

    } else if (data == 0) {
        value = key->client;

    } else if (key->admin) {
        ngx_str_set(&value, "admin");

    } else {
        ngx_str_set(&value, "client");
    }

    v->len = value.len;
    v->data = value.data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
