
/*
 * POST /v1/events bodies: read into their fields, then checked by the
 * API's rules.  The single-pass reader (ngx_http_usage_scan.c) takes the
 * bodies clients send; jansson takes the rest, and words every syntax
 * error.  The rules below see the same fields from either.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>

#include "ngx_http_usage_body.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_scan.h"
#include "ngx_http_usage_text.h"
#include "ngx_http_usage_time.h"


#define NGX_HTTP_USAGE_ERRORS_MAX  12

#define NGX_HTTP_USAGE_CLOUD_SHAPE                                           \
    "Request body must be a JSON array of CloudEvents"

#define NGX_HTTP_USAGE_BATCH_SHAPE                                           \
    "Request body must be a JSON object with an \"events\" array"

/* check_field(): the value is a string (so "must be a string" is not due) */
#define NGX_HTTP_USAGE_NAME_STRING 0x80


/* the single-pass reader's batch, while it is read */
typedef struct {
    ngx_pool_t                  *pool;
    ngx_http_usage_limits_t     *limits;
    ngx_http_usage_batch_t      *batch;
    ngx_array_t                  recs;
} ngx_http_usage_batch_scan_t;


static ngx_int_t ngx_http_usage_parse_event_tree(ngx_pool_t *pool,
    u_char *body, size_t len, ngx_http_usage_limits_t *limits,
    ngx_http_usage_fields_t *fields, ngx_str_t *error);
static ngx_int_t ngx_http_usage_json_body(ngx_pool_t *pool, u_char *body,
    size_t len, json_t **root, ngx_str_t *error);
static ngx_int_t ngx_http_usage_tree_fields(ngx_pool_t *pool, json_t *root,
    ngx_http_usage_limits_t *limits, ngx_http_usage_fields_t *fields);
static ngx_int_t ngx_http_usage_batch_scan(ngx_pool_t *pool, u_char *body,
    size_t len, ngx_http_usage_limits_t *limits,
    ngx_http_usage_batch_t *batch);
static ngx_int_t ngx_http_usage_batch_scanned(void *data,
    ngx_http_usage_fields_t *fields);
static ngx_int_t ngx_http_usage_batch_open(ngx_pool_t *pool, size_t n,
    const char *what, ngx_http_usage_batch_t *batch);
static ngx_int_t ngx_http_usage_batch_note(ngx_http_usage_batch_t *batch,
    ngx_uint_t index, ngx_str_t *message);
static ngx_int_t ngx_http_usage_batch_events(ngx_pool_t *pool, json_t *root,
    ngx_http_usage_limits_t *limits, ngx_http_usage_batch_t *batch);
static ngx_int_t ngx_http_usage_batch_event(ngx_pool_t *pool, json_t *v,
    ngx_uint_t index, ngx_http_usage_limits_t *limits,
    ngx_http_usage_batch_t *batch);
static ngx_int_t ngx_http_usage_tree_metadata(ngx_pool_t *pool, json_t *meta,
    ngx_http_usage_limits_t *limits, ngx_http_usage_fields_t *fields);
static ngx_int_t ngx_http_usage_cloud_batch(ngx_pool_t *pool, json_t *root,
    ngx_http_usage_limits_t *limits, ngx_http_usage_batch_t *batch);
static ngx_int_t ngx_http_usage_cloud_fields(ngx_pool_t *pool, json_t *ce,
    ngx_http_usage_limits_t *limits, ngx_http_usage_fields_t *fields,
    ngx_str_t *error);
static void ngx_http_usage_tree_field(json_t *v, ngx_http_usage_field_t *f);
static ngx_uint_t ngx_http_usage_json_depth(json_t *v, ngx_uint_t limit);
static ngx_int_t ngx_http_usage_check_event(ngx_pool_t *pool,
    ngx_http_usage_fields_t *fields, ngx_http_usage_limits_t *limits,
    ngx_http_usage_record_t *rec, ngx_str_t *error);
static void ngx_http_usage_check_field(ngx_http_usage_field_t *f,
    const char *name, size_t max_chars, ngx_str_t *value, ngx_str_t *errors,
    ngx_uint_t *n, ngx_pool_t *pool);
static void ngx_http_usage_check_extras(ngx_http_usage_fields_t *fields,
    ngx_http_usage_limits_t *limits, ngx_http_usage_record_t *rec,
    ngx_str_t *errors, ngx_uint_t *n);


/*
 * Parses and validates a POST /v1/events body.  NGX_OK: rec holds the
 * trimmed names and the serialized metadata, in the pool.  NGX_DECLINED:
 * error holds every failing rule, in the order of the old service.
 */

ngx_int_t
ngx_http_usage_parse_event(ngx_pool_t *pool, u_char *body, size_t len,
    ngx_http_usage_limits_t *limits, ngx_http_usage_record_t *rec,
    ngx_str_t *error)
{
    ngx_int_t                rc;
    ngx_http_usage_fields_t  fields;

    /* a UTF-8 byte order mark is skipped, as express.json() does */
    if (len >= 3 && body[0] == 0xef && body[1] == 0xbb && body[2] == 0xbf) {
        body += 3;
        len -= 3;
    }

    if (len == 0) {
        /* an empty body reads as {}, as express.json() left it */
        ngx_memzero(&fields, sizeof(ngx_http_usage_fields_t));

    } else {
        rc = ngx_http_usage_scan_event(pool, body, len, &fields);

        if (rc == NGX_DECLINED) {
            (void) ngx_http_usage_json_pool_set(pool);

            rc = ngx_http_usage_parse_event_tree(pool, body, len, limits,
                                                 &fields, error);

            (void) ngx_http_usage_json_pool_set(NULL);
        }

        if (rc != NGX_OK) {
            return rc;
        }
    }

    return ngx_http_usage_check_event(pool, &fields, limits, rec, error);
}


/*
 * Parses and validates a POST /v1/events/batch body, {"events": [...]},
 * each event by the rules of a single POST.  NGX_OK: batch->recs holds
 * all of them.  NGX_DECLINED: nothing is to be stored, and either
 * batch->error says why the body is not a batch, or batch->errors names
 * every invalid event by its index.
 */

ngx_int_t
ngx_http_usage_parse_batch(ngx_pool_t *pool, u_char *body, size_t len,
    ngx_uint_t format, ngx_http_usage_limits_t *limits,
    ngx_http_usage_batch_t *batch)
{
    json_t      *root;
    ngx_int_t    rc;
    ngx_pool_t  *old;

    ngx_str_null(&batch->error);
    batch->recs = NULL;
    batch->n = 0;

    if (ngx_array_init(&batch->errors, pool, 4,
                       sizeof(ngx_http_usage_batch_error_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (len >= 3 && body[0] == 0xef && body[1] == 0xbb && body[2] == 0xbf) {
        body += 3;
        len -= 3;
    }

    if (len == 0) {
        if (format == NGX_HTTP_USAGE_BODY_JSON) {
            ngx_str_set(&batch->error, NGX_HTTP_USAGE_BATCH_SHAPE);

        } else {
            ngx_str_set(&batch->error, NGX_HTTP_USAGE_CLOUD_SHAPE);
        }

        return NGX_DECLINED;
    }

    if (format == NGX_HTTP_USAGE_BODY_JSON) {
        rc = ngx_http_usage_batch_scan(pool, body, len, limits, batch);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    /* what the reader left: jansson reads it again from the start */
    batch->errors.nelts = 0;

    old = ngx_http_usage_json_pool_set(pool);

    rc = ngx_http_usage_json_body(pool, body, len, &root, &batch->error);

    if (rc == NGX_OK && format == NGX_HTTP_USAGE_BODY_CLOUDEVENT
        && json_is_object(root))
    {
        /* one CloudEvent: a batch of one */
        root = json_pack("[o]", root);

        if (root == NULL) {
            rc = NGX_ERROR;
        }
    }

    if (rc == NGX_OK) {
        rc = (format == NGX_HTTP_USAGE_BODY_JSON)
             ? ngx_http_usage_batch_events(pool, root, limits, batch)
             : ngx_http_usage_cloud_batch(pool, root, limits, batch);

        /* the strings stay: the pool holds them */
        json_decref(root);
    }

    (void) ngx_http_usage_json_pool_set(old);

    return rc;
}


/*
 * The single-pass reader's take on a batch: NGX_DECLINED if it is not
 * sure of the body (see scan.c), else as parse_batch().  The records grow
 * with the events read: a batch's size is not known before its end.
 */
static ngx_int_t
ngx_http_usage_batch_scan(ngx_pool_t *pool, u_char *body, size_t len,
    ngx_http_usage_limits_t *limits, ngx_http_usage_batch_t *batch)
{
    ngx_int_t                    rc;
    ngx_http_usage_batch_scan_t  bs;

    if (ngx_array_init(&bs.recs, pool, 16, sizeof(ngx_http_usage_record_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    bs.pool = pool;
    bs.limits = limits;
    bs.batch = batch;

    rc = ngx_http_usage_scan_batch(pool, body, len,
                                   ngx_http_usage_batch_scanned, &bs);
    if (rc != NGX_OK) {
        return rc;
    }

    batch->recs = bs.recs.elts;
    batch->n = bs.recs.nelts;

    return batch->errors.nelts ? NGX_DECLINED : NGX_OK;
}


/* one event read by the scanner; past the most, jansson words the error */

static ngx_int_t
ngx_http_usage_batch_scanned(void *data, ngx_http_usage_fields_t *fields)
{
    ngx_int_t                      rc;
    ngx_str_t                      error;
    ngx_http_usage_record_t       *rec;
    ngx_http_usage_batch_scan_t   *bs;

    bs = data;

    if (bs->recs.nelts == NGX_HTTP_USAGE_BATCH_MAX) {
        return NGX_DECLINED;
    }

    rec = ngx_array_push(&bs->recs);
    if (rec == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(rec, sizeof(ngx_http_usage_record_t));

    rc = ngx_http_usage_check_event(bs->pool, fields, bs->limits, rec,
                                    &error);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_http_usage_batch_note(bs->batch, bs->recs.nelts - 1, &error);
}


/* the records of a batch of n events; a count outside 1 to the most is
 * refused, worded after "what" */

static ngx_int_t
ngx_http_usage_batch_open(ngx_pool_t *pool, size_t n, const char *what,
    ngx_http_usage_batch_t *batch)
{
    u_char  *p;

    if (n == 0 || n > NGX_HTTP_USAGE_BATCH_MAX) {
        p = ngx_pnalloc(pool, 64 + NGX_SIZE_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        batch->error.data = p;
        batch->error.len = ngx_sprintf(p, "%s 1 to %d events, not %uz", what,
                                       NGX_HTTP_USAGE_BATCH_MAX, n)
                           - p;
        return NGX_DECLINED;
    }

    batch->recs = ngx_pcalloc(pool, n * sizeof(ngx_http_usage_record_t));

    return batch->recs ? NGX_OK : NGX_ERROR;
}


/* an invalid event of a batch, by its index */

static ngx_int_t
ngx_http_usage_batch_note(ngx_http_usage_batch_t *batch, ngx_uint_t index,
    ngx_str_t *message)
{
    ngx_http_usage_batch_error_t  *e;

    e = ngx_array_push(&batch->errors);
    if (e == NULL) {
        return NGX_ERROR;
    }

    e->index = index;
    e->message = *message;

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_batch_events(ngx_pool_t *pool, json_t *root,
    ngx_http_usage_limits_t *limits, ngx_http_usage_batch_t *batch)
{
    size_t      i, n;
    json_t     *events, *v;
    ngx_int_t   rc;

    events = json_is_object(root) ? json_object_get(root, "events") : NULL;

    if (events == NULL || !json_is_array(events)) {
        ngx_str_set(&batch->error, NGX_HTTP_USAGE_BATCH_SHAPE);
        return NGX_DECLINED;
    }

    n = json_array_size(events);

    rc = ngx_http_usage_batch_open(pool, n, "events must hold", batch);

    if (rc != NGX_OK) {
        return rc;
    }

    json_array_foreach(events, i, v) {
        rc = ngx_http_usage_batch_event(pool, v, i, limits, batch);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    batch->n = n;

    return batch->errors.nelts ? NGX_DECLINED : NGX_OK;
}


/* one event of a batch; an invalid one is noted by its index */

static ngx_int_t
ngx_http_usage_batch_event(ngx_pool_t *pool, json_t *v, ngx_uint_t index,
    ngx_http_usage_limits_t *limits, ngx_http_usage_batch_t *batch)
{
    ngx_int_t                      rc;
    ngx_str_t                      error;
    ngx_http_usage_fields_t        fields;

    if (json_is_object(v)) {
        rc = ngx_http_usage_tree_fields(pool, v, limits, &fields);

        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_usage_check_event(pool, &fields, limits,
                                        &batch->recs[index], &error);
        if (rc != NGX_DECLINED) {
            return rc;
        }

    } else {
        ngx_str_set(&error, "An event must be a JSON object");
    }

    return ngx_http_usage_batch_note(batch, index, &error);
}


/*
 * A CloudEvent (application/cloudevents+json, CloudEvents 1.0's JSON
 * format, as OpenMeter's clients send usage): subject is the entity, type
 * the event type, id the idempotency id, time the timestamp, data the
 * metadata and data.value, a number, the value.  Then the rules of a POST.
 */

ngx_int_t
ngx_http_usage_parse_cloudevent(ngx_pool_t *pool, u_char *body, size_t len,
    ngx_http_usage_limits_t *limits, ngx_http_usage_record_t *rec,
    ngx_str_t *error)
{
    json_t                   *root;
    ngx_int_t                 rc;
    ngx_pool_t               *old;
    ngx_http_usage_fields_t   fields;

    old = ngx_http_usage_json_pool_set(pool);

    rc = ngx_http_usage_json_body(pool, body, len, &root, error);

    if (rc == NGX_OK) {
        rc = ngx_http_usage_cloud_fields(pool, root, limits, &fields, error);
        json_decref(root);
    }

    (void) ngx_http_usage_json_pool_set(old);

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_usage_check_event(pool, &fields, limits, rec, error);
}


/*
 * The fields of one CloudEvent.  NGX_DECLINED: not one (not an object,
 * required attributes missing, another specversion, data not JSON), and
 * error says which.
 */

static ngx_int_t
ngx_http_usage_cloud_fields(ngx_pool_t *pool, json_t *ce,
    ngx_http_usage_limits_t *limits, ngx_http_usage_fields_t *fields,
    ngx_str_t *error)
{
    u_char       *p;
    json_t       *v, *data;
    ngx_uint_t    i;
    const char   *sv;

    static const char  *required[] = {
        "specversion", "id", "source", "type", "subject"
    };

    if (!json_is_object(ce)) {
        ngx_str_set(error, "A CloudEvent must be a JSON object");
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(pool, 96);
    if (p == NULL) {
        return NGX_ERROR;
    }

    error->data = p;
    p = ngx_cpymem(p, "CloudEvent is missing required attributes: ",
                   sizeof("CloudEvent is missing required attributes: ") - 1);
    error->len = p - error->data;

    for (i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        v = json_object_get(ce, required[i]);

        if (v == NULL || json_is_null(v)) {
            if ((size_t) (p - error->data) > error->len) {
                *p++ = ',';
                *p++ = ' ';
            }

            p = ngx_cpymem(p, required[i], ngx_strlen(required[i]));
        }
    }

    if ((size_t) (p - error->data) > error->len) {
        error->len = p - error->data;
        return NGX_DECLINED;
    }

    sv = json_string_value(json_object_get(ce, "specversion"));

    if (sv == NULL || ngx_strcmp(sv, "1.0") != 0) {
        ngx_str_set(error, "specversion must be \"1.0\"");
        return NGX_DECLINED;
    }

    if (json_object_get(ce, "data_base64")) {
        ngx_str_set(error, "data_base64 is not supported: send data as JSON");
        return NGX_DECLINED;
    }

    data = json_object_get(ce, "data");

    if (data && !json_is_object(data) && !json_is_null(data)) {
        ngx_str_set(error, "data must be a JSON object");
        return NGX_DECLINED;
    }

    ngx_memzero(fields, sizeof(ngx_http_usage_fields_t));

    ngx_http_usage_tree_field(json_object_get(ce, "subject"),
                              &fields->entity);
    ngx_http_usage_tree_field(json_object_get(ce, "type"), &fields->type);
    ngx_http_usage_tree_field(json_object_get(ce, "id"), &fields->id);
    ngx_http_usage_tree_field(json_object_get(ce, "time"),
                              &fields->timestamp);

    if (json_is_object(data)) {
        v = json_object_get(data, "value");

        if (json_is_number(v)) {
            ngx_http_usage_tree_field(v, &fields->value);
        }

        return ngx_http_usage_tree_metadata(pool, data, limits, fields);
    }

    return NGX_OK;
}


/* application/cloudevents-batch+json: an array of CloudEvents */

static ngx_int_t
ngx_http_usage_cloud_batch(ngx_pool_t *pool, json_t *root,
    ngx_http_usage_limits_t *limits, ngx_http_usage_batch_t *batch)
{
    size_t                         i, n;
    json_t                        *v;
    ngx_int_t                      rc;
    ngx_str_t                      error;
    ngx_http_usage_fields_t        fields;

    if (!json_is_array(root)) {
        ngx_str_set(&batch->error, NGX_HTTP_USAGE_CLOUD_SHAPE);
        return NGX_DECLINED;
    }

    n = json_array_size(root);

    rc = ngx_http_usage_batch_open(pool, n, "A batch holds", batch);

    if (rc != NGX_OK) {
        return rc;
    }

    json_array_foreach(root, i, v) {
        rc = ngx_http_usage_cloud_fields(pool, v, limits, &fields, &error);

        if (rc == NGX_OK) {
            rc = ngx_http_usage_check_event(pool, &fields, limits,
                                            &batch->recs[i], &error);
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED
            && ngx_http_usage_batch_note(batch, i, &error) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    batch->n = n;

    return batch->errors.nelts ? NGX_DECLINED : NGX_OK;
}


static ngx_int_t
ngx_http_usage_parse_event_tree(ngx_pool_t *pool, u_char *body, size_t len,
    ngx_http_usage_limits_t *limits, ngx_http_usage_fields_t *fields,
    ngx_str_t *error)
{
    json_t     *root;
    ngx_int_t   rc;

    rc = ngx_http_usage_json_body(pool, body, len, &root, error);

    if (rc != NGX_OK) {
        return rc;
    }

    if (!json_is_object(root)) {
        json_decref(root);
        ngx_str_set(error, "Request body must be a JSON object");
        return NGX_DECLINED;
    }

    rc = ngx_http_usage_tree_fields(pool, root, limits, fields);

    /* the strings stay: the pool holds them */
    json_decref(root);

    return rc;
}


/*
 * A body parsed by jansson.  NGX_DECLINED: not JSON, and error says why,
 * as the old service's parser worded it.
 */

static ngx_int_t
ngx_http_usage_json_body(ngx_pool_t *pool, u_char *body, size_t len,
    json_t **root, ngx_str_t *error)
{
    json_error_t  err;

    *root = json_loadb((char *) body, len, JSON_DECODE_ANY|JSON_ALLOW_NUL,
                       &err);

    if (*root == NULL
        && json_error_code(&err) == json_error_numeric_overflow)
    {
        /* an integer past 64 bits is still a JSON number */
        *root = json_loadb((char *) body, len,
                           JSON_DECODE_ANY|JSON_ALLOW_NUL
                           |JSON_DECODE_INT_AS_REAL, &err);
    }

    if (*root) {
        return NGX_OK;
    }

    if (json_error_code(&err) == json_error_invalid_utf8) {
        ngx_str_set(error, "Request body must be valid UTF-8");
        return NGX_DECLINED;
    }

    if (json_error_code(&err) == json_error_stack_overflow) {
        /* jansson stops at 2048 levels, far past any metadata limit,
         * before the fields can be checked */
        ngx_str_set(error, "Request body is nested too deeply");
        return NGX_DECLINED;
    }

    if (json_error_code(&err) == json_error_out_of_memory) {
        return NGX_ERROR;
    }

    error->data = ngx_pnalloc(pool, sizeof(err.text) + 64);
    if (error->data == NULL) {
        return NGX_ERROR;
    }

    error->len = ngx_sprintf(error->data,
                             "Malformed JSON: %s at line %d column %d",
                             err.text, err.line, err.column)
                 - error->data;

    return NGX_DECLINED;
}


/* the fields of one event object, its metadata serialized into the pool */

static ngx_int_t
ngx_http_usage_tree_fields(ngx_pool_t *pool, json_t *root,
    ngx_http_usage_limits_t *limits, ngx_http_usage_fields_t *fields)
{
    ngx_memzero(fields, sizeof(ngx_http_usage_fields_t));

    ngx_http_usage_tree_field(json_object_get(root, "entityId"),
                              &fields->entity);
    ngx_http_usage_tree_field(json_object_get(root, "eventType"),
                              &fields->type);
    ngx_http_usage_tree_field(json_object_get(root, "id"), &fields->id);
    ngx_http_usage_tree_field(json_object_get(root, "value"), &fields->value);
    ngx_http_usage_tree_field(json_object_get(root, "timestamp"),
                              &fields->timestamp);

    return ngx_http_usage_tree_metadata(pool, json_object_get(root,
                                                             "metadata"),
                                        limits, fields);
}


/* metadata (meta may be NULL): serialized into the pool if an object */

static ngx_int_t
ngx_http_usage_tree_metadata(ngx_pool_t *pool, json_t *meta,
    ngx_http_usage_limits_t *limits, ngx_http_usage_fields_t *fields)
{
    ngx_http_usage_out_t  out;

    ngx_http_usage_tree_field(meta, &fields->metadata);

    if (fields->metadata.type != NGX_HTTP_USAGE_FIELD_OBJECT) {
        return NGX_OK;
    }

    fields->metadata_depth = ngx_http_usage_json_depth(meta,
                                                limits->metadata_max_depth);

    if (fields->metadata_depth > limits->metadata_max_depth) {
        return NGX_OK;
    }

    if (ngx_http_usage_out_init(&out, pool, 256) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_usage_out_value(&out, meta);

    fields->metadata.str.data = out.start;
    fields->metadata.str.len = out.pos - out.start;

    return out.failed ? NGX_ERROR : NGX_OK;
}


static void
ngx_http_usage_tree_field(json_t *v, ngx_http_usage_field_t *f)
{
    if (v == NULL) {
        f->type = NGX_HTTP_USAGE_FIELD_ABSENT;
        return;
    }

    switch (json_typeof(v)) {

    case JSON_NULL:
        f->type = NGX_HTTP_USAGE_FIELD_NULL;
        break;

    case JSON_STRING:
        f->type = NGX_HTTP_USAGE_FIELD_STRING;
        f->str.data = (u_char *) json_string_value(v);
        f->str.len = json_string_length(v);
        break;

    case JSON_INTEGER:
    case JSON_REAL:
        /* JSON has no NaN or Infinity: any number is finite */
        f->type = NGX_HTTP_USAGE_FIELD_NUMBER;
        f->num = json_number_value(v);
        break;

    case JSON_OBJECT:
        f->type = NGX_HTTP_USAGE_FIELD_OBJECT;
        break;

    default:
        f->type = NGX_HTTP_USAGE_FIELD_OTHER;
        break;
    }
}


static ngx_uint_t
ngx_http_usage_json_depth(json_t *v, ngx_uint_t limit)
{
    size_t       i;
    json_t      *item;
    const char  *key;
    ngx_uint_t   d, max;

    if (!json_is_object(v) && !json_is_array(v)) {
        return 0;
    }

    if (limit == 0) {
        return 1;       /* already too deep: stop descending */
    }

    max = 0;

    if (json_is_object(v)) {
        json_object_foreach(v, key, item) {
            d = ngx_http_usage_json_depth(item, limit - 1);
            max = ngx_max(max, d);
        }

    } else {
        json_array_foreach(v, i, item) {
            d = ngx_http_usage_json_depth(item, limit - 1);
            max = ngx_max(max, d);
        }
    }

    return max + 1;
}


static ngx_int_t
ngx_http_usage_check_event(ngx_pool_t *pool, ngx_http_usage_fields_t *fields,
    ngx_http_usage_limits_t *limits, ngx_http_usage_record_t *rec,
    ngx_str_t *error)
{
    u_char      *p;
    size_t       size;
    ngx_uint_t   i, n;
    ngx_str_t    errors[NGX_HTTP_USAGE_ERRORS_MAX];

    n = 0;

    ngx_http_usage_check_field(&fields->entity, "entityId", 255,
                               &rec->entity, errors, &n, pool);
    ngx_http_usage_check_field(&fields->type, "eventType", 100, &rec->type,
                               errors, &n, pool);

    switch (fields->metadata.type) {

    case NGX_HTTP_USAGE_FIELD_ABSENT:
        ngx_str_set(&rec->metadata, "{}");
        break;

    case NGX_HTTP_USAGE_FIELD_OBJECT:
        if (fields->metadata_depth > limits->metadata_max_depth) {
            ngx_str_set(&errors[n], "metadata is nested too deeply");
            n++;
            break;
        }

        rec->metadata = fields->metadata.str;

        if (rec->metadata.len > limits->metadata_max_size) {
            p = ngx_pnalloc(pool, 64);
            if (p == NULL) {
                return NGX_ERROR;
            }

            errors[n].data = p;
            errors[n++].len = ngx_sprintf(p, "metadata must be %uz bytes or "
                                          "less", limits->metadata_max_size)
                              - p;
        }

        break;

    default:
        ngx_str_set(&errors[n], "metadata must be an object");
        n++;
        break;
    }

    ngx_http_usage_check_extras(fields, limits, rec, errors, &n);

    if (n == 0) {
        return NGX_OK;
    }

    size = 0;
    for (i = 0; i < n; i++) {
        if (errors[i].data == NULL) {
            return NGX_ERROR;       /* an allocation failed while checking */
        }

        size += errors[i].len + 2;
    }

    p = ngx_pnalloc(pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    error->data = p;

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
            *p++ = ' ';
        }

        p = ngx_cpymem(p, errors[i].data, errors[i].len);
    }

    error->len = p - error->data;

    return NGX_DECLINED;
}


/* entityId and eventType: required, a string, no control characters,
 * at most max_chars code points once trimmed */

static void
ngx_http_usage_check_field(ngx_http_usage_field_t *f, const char *name,
    size_t max_chars, ngx_str_t *value, ngx_str_t *errors, ngx_uint_t *n,
    ngx_pool_t *pool)
{
    u_char      *p;
    size_t       len;
    ngx_str_t    s;
    ngx_uint_t   flags;

    len = ngx_strlen(name);

    if (f->type == NGX_HTTP_USAGE_FIELD_ABSENT
        || f->type == NGX_HTTP_USAGE_FIELD_NULL)
    {
        flags = NGX_HTTP_USAGE_NAME_EMPTY;

    } else if (f->type != NGX_HTTP_USAGE_FIELD_STRING) {
        flags = 0;

    } else {
        s = f->str;

        flags = ngx_http_usage_check_name(&s, max_chars);

        if (flags == 0) {
            /* the trimmed name, in the body or the pool: both last as
             * long as the request */
            *value = s;
            return;
        }

        flags |= NGX_HTTP_USAGE_NAME_STRING;
    }

    /* at most two messages per field */
    p = ngx_pnalloc(pool, 2 * (len + 48));

    if (flags & NGX_HTTP_USAGE_NAME_EMPTY) {
        errors[*n].data = p;
        errors[(*n)++].len = p ? ngx_sprintf(p, "%s is required", name) - p
                               : 0;
        p = p ? p + len + 48 : NULL;
    }

    if (!(flags & NGX_HTTP_USAGE_NAME_STRING)) {
        errors[*n].data = p;
        errors[(*n)++].len = p ? ngx_sprintf(p, "%s must be a string", name)
                                 - p
                               : 0;
        p = p ? p + len + 48 : NULL;
    }

    if (flags & NGX_HTTP_USAGE_NAME_CONTROL) {
        errors[*n].data = p;
        errors[(*n)++].len = p ? ngx_sprintf(p, "%s must not contain control "
                                             "characters", name) - p
                               : 0;
        p = p ? p + len + 48 : NULL;
    }

    if (flags & NGX_HTTP_USAGE_NAME_LONG) {
        errors[*n].data = p;
        errors[(*n)++].len = p ? ngx_sprintf(p, "%s must be %uz characters "
                                             "or less", name, max_chars) - p
                               : 0;
    }
}


/*
 * The fields of API.md part 3, after the old service's rules: a client
 * id, a metered value, and the client's own event time.
 */

static void
ngx_http_usage_check_extras(ngx_http_usage_fields_t *fields,
    ngx_http_usage_limits_t *limits, ngx_http_usage_record_t *rec,
    ngx_str_t *errors, ngx_uint_t *n)
{
    size_t                   i, chars;
    ngx_http_usage_field_t  *f;

    ngx_str_null(&rec->id);
    rec->value = 1;
    rec->has_time = 0;

    f = &fields->id;

    if (f->type == NGX_HTTP_USAGE_FIELD_STRING) {
        chars = ngx_http_usage_utf8_chars(f->str.data, f->str.len);

        for (i = 0; i < f->str.len; i++) {
            if (f->str.data[i] < 0x20 || f->str.data[i] == 0x7f) {
                break;
            }
        }

        if (chars == 0 || chars > 128) {
            ngx_str_set(&errors[*n], "id must be 1 to 128 characters");
            (*n)++;

        } else if (i < f->str.len) {
            ngx_str_set(&errors[*n], "id must not contain control characters");
            (*n)++;

        } else {
            rec->id = f->str;
        }

    } else if (f->type != NGX_HTTP_USAGE_FIELD_ABSENT
               && f->type != NGX_HTTP_USAGE_FIELD_NULL)
    {
        ngx_str_set(&errors[*n], "id must be a string");
        (*n)++;
    }

    f = &fields->value;

    if (f->type == NGX_HTTP_USAGE_FIELD_NUMBER) {
        rec->value = f->num;

    } else if (f->type != NGX_HTTP_USAGE_FIELD_ABSENT
               && f->type != NGX_HTTP_USAGE_FIELD_NULL)
    {
        ngx_str_set(&errors[*n], "value must be a finite number");
        (*n)++;
    }

    f = &fields->timestamp;

    if (f->type == NGX_HTTP_USAGE_FIELD_ABSENT
        || f->type == NGX_HTTP_USAGE_FIELD_NULL)
    {
        return;
    }

    if (f->type != NGX_HTTP_USAGE_FIELD_STRING
        || ngx_http_usage_parse_iso(f->str.data, f->str.len, &rec->time)
           != NGX_OK)
    {
        ngx_str_set(&errors[*n], "timestamp must be a valid ISO8601 date");
        (*n)++;

    } else if (rec->time < 0) {
        /* a retention of decades would let it in, and the state file
         * could not keep it */
        ngx_str_set(&errors[*n], "timestamp must not be before 1970");
        (*n)++;

    } else if (rec->time < limits->now - limits->retention) {
        ngx_str_set(&errors[*n], "timestamp must be within the retention "
                                 "window");
        (*n)++;

    } else if (rec->time > limits->now + NGX_HTTP_USAGE_FUTURE_MAX) {
        ngx_str_set(&errors[*n], "timestamp must not be more than 5 minutes "
                                 "in the future");
        (*n)++;

    } else {
        rec->has_time = 1;
    }
}
