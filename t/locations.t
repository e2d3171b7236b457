#!/usr/bin/perl

# Where the API ends: "if" and "limit_except" blocks inside an API location
# are still the API (same handler, same zone, same headers); a server with an
# API location keeps its other content free of the API's headers and JSON
# errors, while errors nginx answers before any location (a bad request line)
# are JSON; one trace id per client request, also inside SSI subrequests.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw($UUID4_RE);

my $t = Test::Usage->new();
mkdir $t->dir . '/html' or die "mkdir: $!";
$t->write_file('html/index.html', "<p>hello</p>\n");
$t->write_file('html/page.shtml', 'main=<!--# echo var="usage_trace_id" -->'
	. ' sub=<!--# include virtual="/sub" -->' . "\n");
$t->write_config(<<'EOF')->run();
http {
    usage_zone zone=usage:1m;

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;
        root %%TESTDIR%%/html;

        location /v1/ {
            usage_api usage;

            if ($arg_flag) {
                set $seen 1;
            }

            limit_except GET {
                allow 127.0.0.1;
                deny all;
            }
        }

        location /guarded/ {
            rewrite ^/guarded(/.*)$ $1 break;
            usage_api usage;

            limit_except GET {
                deny all;
            }
        }

        location = /page.shtml {
            ssi on;
            default_type text/html;
        }

        location = /sub {
            return 200 $usage_trace_id;
        }
    }
}
EOF

###############################################################################
# "if" inside the API location

my $r = $t->get('/v1/events?flag=1');
is($r->status, 200, 'if block: served by the API');
ok($r->data && $r->data->{pagination}, 'if block: the API answer');
is($r->header('X-Content-Type-Options'), 'nosniff', 'if block: API headers');

$r = $t->post_event('in-if', 'x');
is($r->status, 201, 'POST through limit_except (allowed): 201');
$r = $t->request('POST', '/v1/events?flag=1',
	headers => ['Content-Type' => 'application/json'],
	body => '{"entityId":"in-if","eventType":"y"}');
is($r->status, 201, 'POST inside if: 201');
is($t->get('/v1/events?entityId=in-if&flag=1')->data->{pagination}{total}, 2,
	'both stored, read inside if');

$r = $t->request('POST', '/guarded/v1/events',
	headers => ['Content-Type' => 'application/json'],
	body => '{"entityId":"denied","eventType":"x"}');
is($r->status, 403, 'limit_except deny: 403');
is($r->err->{code}, 'FORBIDDEN', 'limit_except deny: JSON envelope');
is($t->get('/guarded/v1/events?entityId=denied')->data->{pagination}{total},
	0, 'nothing stored by the denied request');

###############################################################################
# the rest of the server is not the API

$r = $t->get('/index.html');
is($r->status, 200, 'static file');
like($r->body, qr/hello/, 'static file body');
is($r->header('Content-Security-Policy'), undef, 'static file: no API CSP');
is($r->header('Access-Control-Allow-Origin'), undef, 'static file: no CORS');
is($r->header('x-trace-id'), undef, 'static file: no trace header');

$r = $t->get('/missing.html');
is($r->status, 404, 'missing static file: 404');
like($r->body, qr/<html/i, 'missing static file: nginx page, not the API');

# before any location: the API server's error is JSON
my $c = $t->connect();
$c->send_raw("GET /v1/%zz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
$r = $c->read_response('GET');
$c->close();
is($r->status, 400, 'bad request line: 400');
is($r->err->{code}, 'BAD_REQUEST', 'bad request line: JSON');
like($r->header('x-trace-id') // '', $UUID4_RE, 'bad request line: trace id');

###############################################################################
# one trace id per request, subrequests included

$r = $t->get('/page.shtml', headers => ['X-Trace-Id' => 'ssi-1']);
like($r->body, qr/main=ssi-1 sub=ssi-1/, 'SSI subrequest: the same given id');

$r = $t->get('/page.shtml');
my ($main, $sub) = $r->body =~ /main=(\S+) sub=(\S+)/;
like($main // '', $UUID4_RE, 'SSI: generated id');
is($sub, $main, 'SSI subrequest: the same generated id');

$t->done_testing();
