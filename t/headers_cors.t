#!/usr/bin/perl

# Security headers and CORS on every response of an API location (200, 201,
# 400, 404, 405, 415, 413, 204 preflight, HEAD); OPTIONS preflight on any path
# (204, Allow-Methods, Allow-Headers echoed, Max-Age, no body); a fixed
# usage_cors_origin adds Vary: Origin; no HSTS over plain HTTP.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf $UUID4_RE);

my $t = Test::Usage->new();
$t->write_config(api_conf(location => 'client_max_body_size 1k;',
	http => '
    server {
        listen 127.0.0.1:%%PORT2%%;
        server_name fixed;
        location / {
            usage_cors_origin https://app.example.com;
            usage_api usage;
        }
    }
'))->run();

my %SEC = (
	'X-Content-Type-Options' => 'nosniff',
	'X-Frame-Options' => 'DENY',
	'Cache-Control' => 'no-store',
	'Referrer-Policy' => 'no-referrer',
	'Cross-Origin-Opener-Policy' => 'same-origin',
	'Cross-Origin-Resource-Policy' => 'same-origin',
	'Content-Security-Policy' => "default-src 'none'; frame-ancestors 'none'",
	'Access-Control-Allow-Origin' => '*',
);

sub check_headers {
	my ($r, $name, $origin) = @_;
	ok($r->status, "$name: answered") or diag $r->describe;
	for my $h (sort keys %SEC) {
		my $want = $h eq 'Access-Control-Allow-Origin' && $origin
			? $origin : $SEC{$h};
		is($r->header($h), $want, "$name: $h");
	}
	like($r->header('Access-Control-Expose-Headers') // '', qr/x-trace-id/i,
		"$name: Expose-Headers has x-trace-id");
	ok(defined $r->trace_id, "$name: x-trace-id");
	ok(!defined $r->header('Strict-Transport-Security'),
		"$name: no HSTS over plain HTTP");
}

my $json = ['Content-Type' => 'application/json'];

check_headers($t->get('/health'), 'GET /health 200');
check_headers($t->get('/'), 'GET / 200');
check_headers($t->get('/v1/events'), 'GET /v1/events 200');
check_headers($t->post_event('h', 'h'), 'POST 201');
check_headers($t->post_json('/v1/events', '{}'), 'POST 400');
check_headers($t->post_json('/v1/events', '{'), 'POST malformed 400');
check_headers($t->get('/nope'), 'GET 404');
check_headers($t->request('DELETE', '/v1/events'), 'DELETE 405');
check_headers($t->request('POST', '/v1/events', body => 'x=1',
	headers => ['Content-Type' => 'text/plain']), 'POST 415');
check_headers($t->request('POST', '/v1/events', body => '{"a":"' . 'x' x 2000
	. '"}', headers => $json), 'POST 413');
check_headers($t->head('/info'), 'HEAD /info');
check_headers($t->options('/v1/events', headers => [Origin => 'http://a.b',
	'Access-Control-Request-Method' => 'POST']), 'OPTIONS 204');
check_headers($t->get('/v1/usage/x?since=bad'), 'GET 400 since');

###############################################################################
# preflight

my $r = $t->options('/v1/events', headers => [
	Origin => 'http://client.example',
	'Access-Control-Request-Method' => 'POST',
	'Access-Control-Request-Headers' => 'content-type,x-trace-id',
]);
is($r->status, 204, 'preflight 204');
is($r->body, '', 'preflight has no body');
is($r->header('Access-Control-Allow-Methods'), 'GET,POST,OPTIONS',
	'Allow-Methods');
is($r->header('Access-Control-Allow-Headers'), 'content-type,x-trace-id',
	'Allow-Headers echoes the request');
is($r->header('Access-Control-Max-Age'), '86400', 'Max-Age');
is($r->header('Access-Control-Allow-Origin'), '*', 'Allow-Origin');
like($r->trace_id // '', $UUID4_RE, 'preflight trace id');

$r = $t->options('/v1/usage/abc', headers => [
	'Access-Control-Request-Headers' => 'X-Custom, Authorization']);
is($r->status, 204, 'preflight on a summary path');
is($r->header('Access-Control-Allow-Headers'), 'X-Custom, Authorization',
	'Allow-Headers echoed as sent');

for my $p ('/no/such/path', '/', '/health', '/v1/usage/stats') {
	$r = $t->options($p);
	is($r->status, 204, "OPTIONS $p is a preflight");
	is($r->header('Access-Control-Allow-Methods'), 'GET,POST,OPTIONS',
		"OPTIONS $p: Allow-Methods");
}

# preflight on a keepalive connection, then a request
my $c = $t->connect();
$r = $c->request('OPTIONS', '/v1/events', keepalive => 1);
is($r->status, 204, 'preflight on keepalive');
$r = $c->request('GET', '/health', keepalive => 1);
is($r->status, 200, 'request after preflight on keepalive');
$c->close();

###############################################################################
# a fixed origin

my $o = 'https://app.example.com';
$r = $t->get('/health', port => $t->{port2});
check_headers($r, 'fixed origin', $o);
like($r->header('Vary') // '', qr/\bOrigin\b/, 'fixed origin: Vary: Origin');
$r = $t->get('/nope', port => $t->{port2});
check_headers($r, 'fixed origin 404', $o);
like($r->header('Vary') // '', qr/\bOrigin\b/, 'fixed origin 404: Vary');
$r = $t->options('/v1/events', port => $t->{port2},
	headers => [Origin => $o, 'Access-Control-Request-Method' => 'POST']);
is($r->status, 204, 'fixed origin preflight');
is($r->header('Access-Control-Allow-Origin'), $o, 'fixed origin preflight ACAO');
like($r->header('Vary') // '', qr/\bOrigin\b/, 'fixed origin preflight Vary');

$r = $t->get('/health');
ok(!defined $r->header('Vary') || $r->header('Vary') !~ /Origin/,
	'* origin: no Vary: Origin');

$t->done_testing();
