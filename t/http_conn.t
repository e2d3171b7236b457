#!/usr/bin/perl

# Connection handling around the request body: pipelined requests (POST with
# Content-Length, GET, chunked POST, GET) answered in order; bodies that
# arrive slowly in pieces (Content-Length and chunked, one byte per chunk);
# clients that go away in the middle of a body (no crash, nothing stored);
# Expect: 100-continue; a request line nginx refuses is still a JSON error.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf);
use Time::HiRes qw(sleep);

my $t = Test::Usage->new();
$t->write_config(api_conf(track => 1))->run();

my $b = '{"entityId":"conn","eventType":"x"}';
my $len = length $b;
my $post = "POST /v1/events HTTP/1.1\r\nHost: localhost\r\n"
	. "Content-Type: application/json\r\n";

###############################################################################
# pipelining

my $c = $t->connect();
$c->send_raw("${post}Content-Length: $len\r\n\r\n$b"
	. "GET /v1/events?entityId=conn HTTP/1.1\r\nHost: localhost\r\n\r\n"
	. "${post}Transfer-Encoding: chunked\r\n\r\n"
	. sprintf("5\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", substr($b, 0, 5),
		$len - 5, substr($b, 5))
	. "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");

my $r1 = $c->read_response('POST');
my $r2 = $c->read_response('GET');
my $r3 = $c->read_response('POST');
my $r4 = $c->read_response('GET');
$c->close();

is($r1->status, 201, 'pipelined POST');
is($r2->status, 200, 'pipelined GET');
is($r2->data->{pagination}{total}, 1, 'pipelined GET sees the POST');
is($r3->status, 201, 'pipelined chunked POST') or diag $r3->describe;
is($r4->json && $r4->json->{status}, 'healthy', 'pipelined GET after it');

###############################################################################
# slow bodies

$c = $t->connect();
$c->send_raw("${post}Content-Length: $len\r\nConnection: close\r\n\r\n");
sleep 0.2;
$c->send_raw(substr($b, 0, 10));
sleep 0.2;
$c->send_raw(substr($b, 10));
my $r = $c->read_response('POST');
$c->close();
is($r->status, 201, 'body in slow pieces') or diag $r->describe;

$c = $t->connect();
$c->send_raw("${post}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
for my $ch (split //, $b) {
	$c->send_raw("1\r\n$ch\r\n");
	sleep 0.003;
}
$c->send_raw("0\r\n\r\n");
$r = $c->read_response('POST');
$c->close();
is($r->status, 201, 'chunked body one byte at a time') or diag $r->describe;
is($r->data->{entityId}, 'conn', 'slow chunked body parsed');

$r = $t->request('POST', '/v1/events', body => $b,
	headers => ['Content-Type' => 'application/json',
		'Expect' => '100-continue']);
is($r->status, 201, 'Expect: 100-continue');

###############################################################################
# clients that leave in the middle of a body

for my $i (1 .. 5) {
	$c = $t->connect();
	$c->send_raw("${post}Content-Length: 1000\r\n\r\n"
		. '{"entityId":"gone","eventType":"x","metadata":{"a":"');
	sleep 0.02;
	$c->close();
}
for my $i (1 .. 3) {
	$c = $t->connect();
	$c->send_raw("${post}Transfer-Encoding: chunked\r\n\r\n10\r\n{\"entityId\":");
	sleep 0.02;
	$c->close();
}
sleep 0.2;

$r = $t->get('/v1/events?entityId=gone');
is($r->status, 200, 'still serving after aborted bodies');
is($r->data->{pagination}{total}, 0, 'nothing stored from aborted bodies');
is($t->get('/v1/events?entityId=conn')->data->{pagination}{total}, 5,
	'all complete bodies stored');

###############################################################################
# a request line nginx refuses on an API server

$r = $t->request('GET', "GET /a\"b\\c<>{}|^`\x01 HTTP/1.1\r\nHost: x\r\n"
	. "Connection: close\r\n\r\n", raw => 1);
is($r->status, 400, 'bad request line: 400');
ok($r->json && $r->err->{code}, 'bad request line: JSON error')
	or diag $r->describe;

$t->done_testing();
