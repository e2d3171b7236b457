#!/usr/bin/perl

# Errors that nginx itself produces in an API location are answered with the
# JSON error envelope (code, message, traceId), the JSON Content-Type and the
# API headers, never an HTML page: limit_req (429), deny (403), auth_basic
# (401), return 503, return 500, a URI too long (414), a bad request line on an API
# server (400).  A non-API location keeps nginx's own pages.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf $UUID4_RE);

my $t = Test::Usage->new();
$t->write_file('htpasswd', "user:{PLAIN}secret\n");
$t->write_config(<<'EOF')->run();
http {
    usage_zone zone=usage:1m;
    limit_req_zone $binary_remote_addr zone=rl:1m rate=1r/m;
    large_client_header_buffers 4 2k;

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;

        location / { usage_api usage; }
        location = /health {
            usage_api usage;
            limit_req zone=rl;
            limit_req_status 429;
        }
        location = /ready { usage_api usage; deny all; }
        location = /v1/boom { usage_api usage; return 500; }
        location = /info { usage_api usage; return 503; }
        location = /docs {
            usage_api usage;
            auth_basic "usage";
            auth_basic_user_file %%TESTDIR%%/htpasswd;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        server_name plain;
        location / { return 503; }
    }
}
EOF

sub json_error {
	my ($r, $status, $name) = @_;
	is($r->status, $status, "$name: $status") or diag $r->describe;
	is($r->header('Content-Type'), 'application/json; charset=utf-8',
		"$name: JSON");
	unlike($r->body, qr/<html/i, "$name: no HTML");
	like($r->err->{code} // '', qr/^[A-Z][A-Z_]+$/, "$name: code");
	ok(length($r->err->{message} // ''), "$name: message");
	ok(defined $r->trace_id && ($r->err->{traceId} // '') eq $r->trace_id,
		"$name: traceId");
	is($r->header('X-Content-Type-Options'), 'nosniff',
		"$name: security headers");
}

my $r = $t->get('/health');
is($r->status, 200, 'first request within the rate');
json_error($t->get('/health', headers => ['X-Trace-Id' => 'rl']),
	429, 'limit_req');
json_error($t->get('/ready'), 403, 'deny');
json_error($t->get('/info'), 503, 'return 503');
json_error($t->get('/v1/boom'), 500, 'return 500');
is($t->get('/v1/boom')->err->{code}, 'INTERNAL_ERROR', '500: INTERNAL_ERROR');
json_error($t->get('/docs'), 401, 'auth_basic');
like($t->get('/docs')->header('WWW-Authenticate') // '', qr/Basic/,
	'auth_basic challenge kept');
json_error($t->get('/' . 'a' x 3000), 414, 'URI too long');
json_error($t->get('/v1/usage/%zz'), 400, 'bad %-escape');
like($t->get('/v1/usage/%zz')->trace_id // '', $UUID4_RE,
	'bad %-escape: generated trace id');
is($t->get('/docs', headers => ['Authorization' => 'Basic dXNlcjpzZWNyZXQ='])
	->status, 200, 'auth_basic with credentials');

$r = $t->get('/health', headers => ['X-Trace-Id' => 'rl-2']);
is($r->err->{traceId}, 'rl-2', 'given trace id in a core error');

$r = $t->get('/x', port => $t->{port2});
is($r->status, 503, 'non-API location');
like($r->body, qr/<html/i, 'non-API location keeps the HTML page');
ok(!defined $r->trace_id, 'non-API location: no x-trace-id');

$t->done_testing();
