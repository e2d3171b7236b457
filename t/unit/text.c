
/*
 * Unit test of ngx_http_usage_text.c: the UTF-8 and name rules that the
 * body reader, the state file and the fleet's wire format all rely on.
 * The module's source is compiled into the test, against nginx's headers.
 */


#include "../../src/ngx_http_usage_text.c"

#include "tap.h"


#define valid(s)  (ngx_http_usage_utf8_valid((u_char *) s, sizeof(s) - 1)   \
                   == NGX_OK)


static ngx_uint_t
check(const char *name, size_t max_chars, ngx_str_t *out)
{
    out->data = (u_char *) name;
    out->len = ngx_strlen(name);

    return ngx_http_usage_check_name(out, max_chars);
}


int
main(void)
{
    ngx_str_t  s;

    tap_ok(valid("") && valid("plain ascii") && valid("\xc3\xa9")
           && valid("\xe2\x82\xac") && valid("\xf0\x9f\x98\x80")
           && valid("\xef\xbf\xbf") && valid("\xf4\x8f\xbf\xbf"),
           "utf8: ASCII and 2, 3, 4-byte sequences up to U+10FFFF");

    tap_ok(!valid("\x80") && !valid("\xc3") && !valid("\xc3\xc3")
           && !valid("\xc0\xaf") && !valid("\xe0\x80\xaf")
           && !valid("\xf0\x80\x80\xaf") && !valid("\xed\xa0\x80")
           && !valid("\xf4\x90\x80\x80") && !valid("\xff")
           && !valid("\xe2\x82"),
           "utf8: continuation first, truncated, overlong, surrogate, "
           "past U+10FFFF, impossible byte");

    tap_ok(check("customer-42", 255, &s) == 0 && s.len == 11,
           "name: a plain one passes untouched");

    tap_ok(check("  a b \xc2\xa0", 255, &s) == 0 && s.len == 3
           && ngx_strncmp(s.data, "a b", 3) == 0,
           "name: trimmed as JavaScript does, no-break space included");

    tap_ok(check(" \t\xe3\x80\x80 ", 255, &s) == NGX_HTTP_USAGE_NAME_EMPTY
           && check("", 255, &s) == NGX_HTTP_USAGE_NAME_EMPTY,
           "name: empty, or white space only");

    tap_ok(check("a\x01z", 255, &s) == NGX_HTTP_USAGE_NAME_CONTROL
           && check("a\x7fz", 255, &s) == NGX_HTTP_USAGE_NAME_CONTROL,
           "name: control characters");

    tap_ok(check("abcd", 3, &s) == NGX_HTTP_USAGE_NAME_LONG
           && check("\xc3\xa9\xc3\xa9\xc3\xa9", 3, &s) == 0
           && check("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 3, &s)
              == NGX_HTTP_USAGE_NAME_LONG,
           "name: the limit counts code points, not bytes");

    return tap_done();
}
