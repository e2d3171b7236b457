#!/usr/bin/perl

# Rate limiting and access control done by nginx in front of the API come
# back as the API's JSON errors:
#   - limit_req (limit_req_status 429) with a low rate and a burst: the
#     requests over it are 429 {"error":{"code":"RATE_LIMITED","message",
#     "traceId"}} with the trace id echoed and Retry-After (usage_retry_after,
#     default 1 second; 30s and 2m configured);
#   - 401 from "if ($api_client = "") { return 401; }" with a map of keys:
#     UNAUTHORIZED; 403 from deny: FORBIDDEN; both JSON with the trace id;
#   - a non-API location keeps nginx's own 429 page (the filter only
#     rewrites API locations), without Retry-After;
#   - usage_retry_after below 1s, or not in seconds, is refused.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf $UUID4_RE);

my $t = Test::Usage->new();
$t->write_file('a.txt', "hello\n");
$t->write_config(<<'EOF')->run();
http {
    usage_zone zone=usage:1m;

    map $http_x_api_key $api_client {
        default   "";
        key-a     a;
        key-b     b;
    }

    limit_req_zone $api_client zone=per_key:1m rate=1r/m;
    limit_req_zone $api_client zone=slow:1m rate=1r/m;
    limit_req_zone $binary_remote_addr zone=static:1m rate=1r/m;
    limit_req_zone $binary_remote_addr zone=info:1m rate=1r/m;
    limit_req_status 429;

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;
        usage_track usage;

        location / {
            usage_api usage;
            if ($api_client = "") {
                return 401;
            }
            limit_req zone=per_key burst=2 nodelay;
        }

        location /v1/usage/ {
            usage_api usage;
            usage_retry_after 30s;
            if ($api_client = "") {
                return 401;
            }
            limit_req zone=slow;
        }

        location = /info {
            usage_api usage;
            usage_retry_after 2m;
            limit_req zone=info;
        }

        location = /docs {
            usage_api usage;
            allow 10.0.0.1;
            deny all;
        }

        location /static/ {
            alias %%TESTDIR%%/;
            limit_req zone=static;
        }
    }
}
EOF

sub json_error {
	my ($r, $status, $code, $trace, $name) = @_;
	is($r->status, $status, "$name: $status") or diag $r->describe;
	is($r->header('Content-Type'), 'application/json; charset=utf-8',
		"$name: JSON");
	is_deeply([sort keys %{ $r->json // {} }], ['error'], "$name: envelope");
	is_deeply([sort keys %{ $r->err }], [qw(code message traceId)],
		"$name: code, message, traceId");
	is($r->err->{code}, $code, "$name: $code");
	ok(length($r->err->{message} // ''), "$name: message");
	is($r->err->{traceId}, $trace, "$name: traceId in the body");
	is($r->trace_id, $trace, "$name: x-trace-id echoed");
	is($r->header('X-Content-Type-Options'), 'nosniff',
		"$name: API headers");
}

###############################################################################
# 429 with Retry-After

my (%status, @limited);
for my $i (1 .. 8) {
	my $r = $t->get('/v1/events', headers => ['X-Api-Key' => 'key-a',
		'X-Trace-Id' => "burst-$i"]);
	$status{ $r->status }++;
	push @limited, [$i, $r] if $r->status == 429;
}
is($status{200}, 3, 'the rate and its burst pass (1 + 2)');
is($status{429}, 5, 'the rest is limited');

for (@limited) {
	my ($i, $r) = @$_;
	json_error($r, 429, 'RATE_LIMITED', "burst-$i", "limited request $i");
	is($r->header('Retry-After'), '1', "limited request $i: Retry-After: 1");
}

my $r = $t->get('/v1/events', headers => ['X-Api-Key' => 'key-b']);
is($r->status, 200, 'another key has its own rate');
is($r->header('Retry-After'), undef, 'no Retry-After on a 200');

$r = $t->get('/v1/usage/cust', headers => ['X-Api-Key' => 'key-a']);
is($r->status, 200, 'first request of a location without a burst');
$r = $t->get('/v1/usage/cust', headers => ['X-Api-Key' => 'key-a',
	'X-Trace-Id' => 'slow-1']);
json_error($r, 429, 'RATE_LIMITED', 'slow-1', 'usage_retry_after 30s');
is($r->header('Retry-After'), '30', 'Retry-After: 30');

$t->get('/info');
$r = $t->get('/info');
is($r->status, 429, 'limited /info');
is($r->header('Retry-After'), '120', 'usage_retry_after 2m: Retry-After: 120');
like($r->err->{traceId} // '', $UUID4_RE, 'generated trace id in a 429');
is($r->err->{traceId}, $r->trace_id, 'and echoed');

###############################################################################
# 401 and 403 from nginx's configuration

$r = $t->get('/v1/events', headers => ['X-Trace-Id' => 'nokey-1']);
json_error($r, 401, 'UNAUTHORIZED', 'nokey-1', 'no API key');
$r = $t->post_event('cust', 'x', undef, headers => ['X-Trace-Id' => 'nokey-2',
	'X-Api-Key' => 'wrong']);
json_error($r, 401, 'UNAUTHORIZED', 'nokey-2', 'unknown API key, POST');
$r = $t->get('/v1/usage/cust', headers => ['X-Trace-Id' => 'nokey-3']);
json_error($r, 401, 'UNAUTHORIZED', 'nokey-3', 'no API key, usage');

$r = $t->get('/docs', headers => ['X-Trace-Id' => 'deny-1']);
json_error($r, 403, 'FORBIDDEN', 'deny-1', 'deny');
$r = $t->request('DELETE', '/docs', headers => ['X-Trace-Id' => 'deny-2']);
json_error($r, 403, 'FORBIDDEN', 'deny-2', 'deny before the method check');

###############################################################################
# a non-API location keeps nginx's page

is($t->get('/static/a.txt')->status, 200, 'static within the rate');
$r = $t->get('/static/a.txt');
is($r->status, 429, 'static over the rate');
like($r->body, qr/<html/i, 'non-API location: nginx\'s own page');
is($r->header('Retry-After'), undef, 'non-API location: no Retry-After');

###############################################################################
# configuration

for my $bad (['0s', qr/must be at least 1s/], ['500ms', qr/invalid value/],
	['-1', qr/invalid value/])
{
	my ($code, $out) = $t->check_config(api_conf(
		location => "usage_retry_after $bad->[0];"));
	isnt($code, 0, "usage_retry_after $bad->[0] refused");
	like($out, qr/\[emerg\].*"usage_retry_after" directive $bad->[1]/,
		"usage_retry_after $bad->[0]: message") or diag $out;
}
my ($code, $out) = $t->check_config(api_conf(
	http => 'usage_retry_after 1h;'));
is($code, 0, 'usage_retry_after 1h in http') or diag $out;

$t->done_testing();
