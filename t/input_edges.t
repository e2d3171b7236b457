#!/usr/bin/perl

# Inputs at the edges of the contract, found by black-box probing: query
# parameter names and values are %-decoded alike (limit, offset, interval
# included); TRACE, which nginx refuses itself, still gets 405 with Allow;
# raw non-UTF-8 bytes in a path never make an error body invalid JSON; a
# UTF-8 byte order mark is accepted; a compressed body is a clear 415; a body
# nested past the parser's limit is a clear 400.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf json_decode);
use Encode qw(decode FB_CROAK);

my $t = Test::Usage->new();
$t->write_config(api_conf())->run();

###############################################################################
# query strings: names and values are decoded before they are read

my $r = $t->get('/v1/events?%6Cimit=abc');
is($r->status, 400, 'encoded parameter name is read');
is($r->err->{message}, 'limit must be between 1 and 1000', 'its message');

$r = $t->get('/v1/events?limit=%31%30&offset=%30');
is($r->status, 200, 'encoded limit and offset');
is($r->data->{pagination}{limit}, 10, 'limit %31%30 is 10');
is($r->data->{pagination}{offset}, 0, 'offset %30 is 0');

$r = $t->get('/v1/usage/e/history?interval=%64ay');
is($r->status, 200, 'encoded interval');
is($r->data->{interval}, 'day', 'interval %64ay is day');

$r = $t->get('/v1/usage/e/history?interval=d%61');
is($r->status, 400, 'encoded interval still checked');

$r = $t->get('/v1/usage/e?%73ince=bad');
is($r->status, 400, 'encoded since name');
is($r->err->{message}, 'since must be a valid ISO8601 date', 'since message');

###############################################################################
# TRACE is refused by nginx before any handler: still 405 with Allow

$r = $t->request('TRACE', '/v1/events');
is($r->status, 405, 'TRACE: 405');
is($r->header('Allow'), 'GET, HEAD, POST, OPTIONS', 'TRACE: Allow');
is($r->err->{code}, 'METHOD_NOT_ALLOWED', 'TRACE: code');
like($r->err->{message}, qr{^Method TRACE is not allowed on /v1/events},
	'TRACE: message');

$r = $t->request('TRACE', '/v1/usage/x');
is($r->header('Allow'), 'GET, HEAD, OPTIONS', 'TRACE on a read route: Allow');

###############################################################################
# raw bytes that are not UTF-8 in the path: the JSON stays valid UTF-8

for my $case (["GET /nope/\xff\xfe", 404], ["POST /v1/usage/\xff", 405],
	["DELETE /v1/usage/\xc3/history", 405])
{
	my ($line, $status) = @$case;
	my $c = $t->connect();
	$c->send_raw("$line HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
		. "Content-Length: 0\r\n\r\n");
	my $res = $c->read_response((split / /, $line)[0]);
	$c->close();
	is($res->status, $status, "raw bytes: $status");
	my $text = eval { decode('UTF-8', $res->body, FB_CROAK) };
	ok(defined $text, "raw bytes: body is valid UTF-8")
		or diag $res->describe;
	my $j = eval { json_decode($res->body) };
	like($j && $j->{error}{message}, qr/\x{fffd}/,
		'raw bytes: replaced by U+FFFD');
}

###############################################################################
# bodies

$r = $t->request('POST', '/v1/events',
	headers => ['Content-Type' => 'application/json'],
	body => "\xef\xbb\xbf" . '{"entityId":"bom","eventType":"t"}');
is($r->status, 201, 'UTF-8 byte order mark skipped');
is($r->data->{entityId}, 'bom', 'body read after the BOM');

$r = $t->request('POST', '/v1/events',
	headers => ['Content-Type' => 'application/json',
		'Content-Encoding' => 'gzip'],
	body => "\x1f\x8b\x08\x00");
is($r->status, 415, 'Content-Encoding gzip: 415');
is($r->err->{code}, 'UNSUPPORTED_MEDIA_TYPE', 'Content-Encoding: code');
like($r->err->{message}, qr/Content-Encoding/, 'Content-Encoding: message');

$r = $t->request('POST', '/v1/events',
	headers => ['Content-Type' => 'application/json',
		'Content-Encoding' => 'identity'],
	body => '{"entityId":"ident","eventType":"t"}');
is($r->status, 201, 'Content-Encoding identity is plain');

my $deep = '{"entityId":"a","eventType":"t","metadata":'
	. ('{"a":' x 3000) . '1' . ('}' x 3001);
$r = $t->post_json('/v1/events', $deep);
is($r->status, 400, 'nested past the parser limit: 400');
is($r->err->{message}, 'Request body is nested too deeply',
	'nested past the parser limit: message');

$t->done_testing();
