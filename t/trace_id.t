#!/usr/bin/perl

# Trace id: echoed from X-Trace-Id in x-trace-id and in error bodies;
# generated (UUID v4, unique, also across the two workers) when absent or
# empty; replaced when longer than 128 bytes or holding characters outside
# [A-Za-z0-9._:-]; W3C traceparent used when X-Trace-Id is absent; a custom
# header name with usage_trace_header.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf $UUID4_RE);

my $t = Test::Usage->new();
$t->write_config(api_conf(listen => 'reuseport', location =>
	'add_header X-Worker $pid always;', http => '
    server {
        listen 127.0.0.1:%%PORT2%%;
        server_name custom;
        usage_trace_header X-Request-Id;
        location / { usage_api usage; }
    }
'))->run();

sub tid {
	my (@h) = @_;
	return $t->get('/health', headers => \@h)->trace_id;
}

###############################################################################
# echo

is(tid('X-Trace-Id' => 'abc-123'), 'abc-123', 'echoed');
is(tid('x-trace-id' => 'lower'), 'lower', 'request header name any case');
is(tid('X-Trace-Id' => 'Ab9._:-z'), 'Ab9._:-z', 'all allowed characters');
my $r = $t->get('/nope', headers => ['X-Trace-Id' => 'err-1']);
is($r->trace_id, 'err-1', 'echoed on 404');
is($r->err->{traceId}, 'err-1', 'in the 404 body');
$r = $t->post_json('/v1/events', {}, headers => ['X-Trace-Id' => 'err-2']);
is($r->err->{traceId}, 'err-2', 'in the 400 body');
is($r->trace_id, 'err-2', 'echoed on 400');
$r = $t->post_event('e', 't', undef, headers => ['X-Trace-Id' => 'ok-1']);
is($r->trace_id, 'ok-1', 'echoed on 201');
$r = $t->options('/v1/events', headers => ['X-Trace-Id' => 'pre-1',
	'Origin' => 'http://x.example', 'Access-Control-Request-Method' => 'POST']);
is($r->trace_id, 'pre-1', 'echoed on the 204 preflight');
is(scalar($r->headers('x-trace-id')), 1, 'one x-trace-id header');

my $max = join '', map { ('a' .. 'z', 0 .. 9)[$_ % 36] } 1 .. 128;
is(tid('X-Trace-Id' => $max), $max, '128 bytes kept');

###############################################################################
# generated

my $g = tid();
like($g // '', $UUID4_RE, 'generated when absent');
like(tid('X-Trace-Id' => '') // '', $UUID4_RE, 'generated when empty');
$r = $t->get('/nope');
like($r->err->{traceId} // '', $UUID4_RE, 'generated id in the error body');
is($r->err->{traceId}, $r->trace_id, 'same id in header and body');

# unique, across both workers
my (%seen, %workers);
my $dups = 0;
for (1 .. 200) {
	my $r = $t->get('/health');
	my $id = $r->trace_id // '';
	$dups++ if $seen{$id}++ || $id !~ $UUID4_RE;
	$workers{ $r->header('X-Worker') // '' }++;
}
is($dups, 0, '200 generated ids are unique UUID v4');
SKIP: {
	skip 'only one worker answered', 1 if keys %workers < 2;
	ok(keys %workers == 2, 'ids came from both workers');
}

###############################################################################
# replaced

for my $bad ('a' x 129, 'has space', 'slash/x', 'quote"', 'semi;colon',
	'comma,x', "caf\x{e9}", '<script>', 'a+b', 'a=b', '{json}', "tab\tx",
	'percent%20')
{
	my $v = $bad;
	utf8::encode($v);
	my $got = tid('X-Trace-Id' => $v);
	like($got // '', $UUID4_RE, 'replaced: ' . substr($bad, 0, 20));
}

###############################################################################
# traceparent

my $tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
is(tid(traceparent => $tp), '4bf92f3577b34da6a3ce929d0e0e4736',
	'traceparent trace-id used');
is(tid(Traceparent => $tp, 'X-Trace-Id' => 'mine'), 'mine',
	'X-Trace-Id wins over traceparent');
for my $bad ('garbage', '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01',
	'00-4bf92f3577b34da6a3ce929d0e0e4736', '00-xyz-00f067aa0ba902b7-01',
	'00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01',
	'00-00000000000000000000000000000000-00f067aa0ba902b7-01',
	'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
	'00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
	'00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra',
	'00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
	'01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x')
{
	like(tid(traceparent => $bad) // '', $UUID4_RE, "bad traceparent '$bad'");
}
# a later version may append fields after a dash
is(tid(traceparent =>
	'01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future'),
	'4bf92f3577b34da6a3ce929d0e0e4736', 'traceparent of a later version');

$r = $t->get('/nope', headers => [traceparent => $tp]);
is($r->err->{traceId}, '4bf92f3577b34da6a3ce929d0e0e4736',
	'traceparent id in the error body');

###############################################################################
# usage_trace_header X-Request-Id

sub custom {
	my (@h) = @_;
	my $r = $t->get('/nope', headers => \@h, port => $t->{port2});
	return $r;
}

$r = custom('X-Request-Id' => 'rid-1');
is($r->err->{traceId}, 'rid-1', 'custom header read');
is($r->header('x-request-id') // $r->header('x-trace-id'), 'rid-1',
	'custom header id echoed');
$r = custom('X-Trace-Id' => 'not-this');
like($r->err->{traceId} // '', $UUID4_RE, 'X-Trace-Id ignored with a custom header');
$r = custom('X-Request-Id' => 'bad id');
like($r->err->{traceId} // '', $UUID4_RE, 'custom header validated too');

$t->done_testing();
