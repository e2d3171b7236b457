#!/usr/bin/perl

# Request bodies: over client_max_body_size -> 413 PAYLOAD_TOO_LARGE as JSON
# (with client_max_body_size 0, over the module's own 1 MB ceiling)
# (Content-Length and chunked), exactly at the limit accepted; a body larger
# than client_body_buffer_size (buffered to a temp file) is stored or refused
# cleanly; a GET with a body is discarded and keepalive goes on.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf json_encode);

my $t = Test::Usage->new();
$t->write_config(api_conf(location => '
            client_max_body_size 4k;
            client_body_buffer_size 8k;
', http => '
    server {
        listen 127.0.0.1:%%PORT2%%;
        server_name tempfile;
        location / {
            usage_api usage;
            client_max_body_size 64k;
            client_body_buffer_size 1k;
        }
    }
'))->run();

my $CT = 'application/json; charset=utf-8';

sub body_of {
	my ($size) = @_;
	my $b = json_encode({ entityId => 'big', eventType => 'b',
		metadata => { pad => '' } });
	my $pad = $size > length $b ? 'p' x ($size - length $b) : '';
	$b =~ s/"pad":""/"pad":"$pad"/;
	return $b;
}

sub too_large {
	my ($r, $name) = @_;
	is($r->status, 413, "$name: 413") or diag $r->describe;
	is($r->header('Content-Type'), $CT, "$name: JSON");
	is($r->err->{code}, 'PAYLOAD_TOO_LARGE', "$name: code");
	ok(length($r->err->{message} // ''), "$name: message");
	is($r->err->{traceId}, 'big-1', "$name: traceId");
	is($r->trace_id, 'big-1', "$name: x-trace-id");
	unlike($r->body, qr/<html/i, "$name: not an HTML page");
}

my @h = ('Content-Type' => 'application/json', 'X-Trace-Id' => 'big-1');

too_large($t->request('POST', '/v1/events', body => body_of(5000),
	headers => \@h), 'Content-Length over the limit');
too_large($t->request('POST', '/v1/events', body => body_of(100000),
	headers => \@h), 'Content-Length far over the limit');
too_large($t->request('POST', '/v1/events', body => body_of(5000),
	chunked => 1, chunk_size => 700, headers => \@h), 'chunked over the limit');
too_large($t->request('POST', '/v1/events', body => body_of(5000),
	chunked => 1, chunk_size => 5000, headers => \@h),
	'one chunk over the limit');

# header only: Content-Length announces too much, nothing sent yet
my $c = $t->connect();
$c->send_raw("POST /v1/events HTTP/1.1\r\nHost: localhost\r\n"
	. "Content-Type: application/json\r\nX-Trace-Id: big-1\r\n"
	. "Content-Length: 1000000\r\n\r\n");
too_large($c->read_response('POST'), 'announced body over the limit');
$c->close();

# a 413 is not recorded
is($t->get('/v1/events?entityId=big')->data->{pagination}{total}, 0,
	'nothing stored');

###############################################################################
# at the limit, and through a temp file

my $r = $t->request('POST', '/v1/events', body => body_of(4096),
	headers => ['Content-Type' => 'application/json']);
is($r->status, 201, 'exactly client_max_body_size') or diag $r->describe;

for my $chunked (0, 1) {
	$r = $t->request('POST', '/v1/events', body => body_of(6000),
		chunked => $chunked, chunk_size => 512, port => $t->{port2},
		headers => ['Content-Type' => 'application/json']);
	my $n = $chunked ? 'chunked body' : 'body';
	if ($r->status == 201) {
		pass("$n over client_body_buffer_size stored");
		is($r->data->{metadata}{pad}, 'p' x (6000 - length body_of(0)),
			"$n: metadata intact");
	} else {
		ok($r->status >= 400 && $r->err->{code}, "$n refused cleanly")
			or diag $r->describe;
		pass("$n: (refused)");
	}
}

###############################################################################
# a GET with a body: discarded, keepalive goes on

$c = $t->connect();
$r = $c->request('GET', '/v1/events?limit=1', keepalive => 1,
	body => '{"ignored":true}');
is($r->status, 200, 'GET with a body');
$r = $c->request('GET', '/health', keepalive => 1);
is($r->status, 200, 'next request on the connection');
is($r->json && $r->json->{status}, 'healthy', 'next request answered');
$r = $c->request('GET', '/nope', keepalive => 1, body => 'x' x 2000);
is($r->status, 404, '404 with a body');
$r = $c->request('GET', '/health', keepalive => 1);
is($r->status, 200, 'next request after a 404 with a body');
$c->close();

$t->finish();

###############################################################################
# client_max_body_size 0 (unlimited): the module still reads at most 1 MB

$t = Test::Usage->new();
$t->write_config(api_conf(location => 'client_max_body_size 0;'))->run();

for my $chunked (0, 1) {
	$r = $t->request('POST', '/v1/events', body => body_of(1536 * 1024),
		chunked => $chunked, chunk_size => 65536, headers => \@h);
	my $n = $chunked ? 'unlimited, chunked' : 'unlimited, Content-Length';
	is($r->status, 413, "$n: 413 over the module's 1 MB");
	is($r->err->{code}, 'PAYLOAD_TOO_LARGE', "$n: code");
	like($r->err->{message}, qr/limit of 1048576 bytes/, "$n: message");
}

is($t->post_json('/v1/events', body_of(2000), headers => ['X-Trace-Id' => 'x'])
	->status, 201, 'unlimited: a normal body is fine');
is($t->get('/v1/events?entityId=big')->data->{pagination}{total}, 1,
	'only the normal body stored');

$t->done_testing();
