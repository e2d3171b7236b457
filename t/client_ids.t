#!/usr/bin/perl

# Idempotent ingestion with a client "id": the event's id is the client id;
# a repeat POST with the same (entityId, id) is 200 with the stored event and
# stores and counts nothing (store.duplicates); the same id for another
# entity is another event; id validation (type, 1..128 code points, control
# characters) in order after the other rules; a duplicate whose raw event
# the log evicted (alreadyRecorded); concurrent duplicates on two workers
# give exactly one 201; the max_ids bound (an evicted id is accepted again).

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf json_encode pct $UUID4_RE $ISO_RE);
use Time::HiRes qw(sleep);
use POSIX ();

my $t = Test::Usage->new();
$t->write_config(api_conf())->run();

sub post {
	my (%ev) = @_;
	return $t->post_json('/v1/events', \%ev);
}

sub store { $t->get('/v1/usage/stats')->data->{store} }

sub listed {
	my ($entity) = @_;
	return $t->get('/v1/events?limit=1000&entityId=' . pct($entity))->data;
}

###############################################################################
# first POST: 201, the id is the client's

my $r = post(entityId => 'cust-1', eventType => 'call', id => 'req-0001',
	metadata => { n => 1 });
is($r->status, 201, 'POST with an id: 201') or diag $r->describe;
my $first = $r->data;
is($first->{id}, 'req-0001', 'the event id is the client id');
is($first->{entityId}, 'cust-1', 'entityId');
is_deeply($first->{metadata}, { n => 1 }, 'metadata');
like($first->{timestamp} // '', $ISO_RE, 'timestamp');
like($r->body, qr/"id":"req-0001",/, 'id serialized as a string');

# no id, or a null id: a generated uuid
$r = post(entityId => 'cust-1', eventType => 'call');
like($r->data->{id} // '', $UUID4_RE, 'no id: a uuid');
$r = post(entityId => 'cust-1', eventType => 'call', id => undef);
is($r->status, 201, 'id null: 201');
like($r->data->{id} // '', $UUID4_RE, 'id null is absent: a uuid');

my $s = store();
is($s->{duplicates}, 0, 'no duplicates yet');
is($s->{recorded}, 3, 'three recorded');

###############################################################################
# the repeat: 200 with the stored event, nothing stored or counted

sleep 0.01;
$r = post(entityId => 'cust-1', eventType => 'call', id => 'req-0001',
	metadata => { n => 1 });
is($r->status, 200, 'repeat: 200') or diag $r->describe;
is($r->json->{success}, JSON::PP::true, 'repeat: success envelope');
is_deeply($r->data, $first, 'repeat: the same data as the first answer');

# a repeat with another body still answers the stored event
$r = post(entityId => '  cust-1 ', eventType => 'other', id => 'req-0001',
	metadata => { n => 2 }, value => 5);
is($r->status, 200, 'repeat with another body (entityId trimmed): 200');
is_deeply($r->data, $first, 'the stored event, not the new body');

$s = store();
is($s->{duplicates}, 2, 'store.duplicates counts both repeats');
is($s->{recorded}, 3, 'store.recorded unchanged');
is($s->{events}, 3, 'store.events unchanged');

my $u = $t->get('/v1/usage/cust-1')->data;
is($u->{totalEvents}, 3, 'summary total not incremented');
is_deeply($u->{byEventType}, { call => 3 }, 'no "other" type counted');
is($u->{totalValue}, 3, 'value of the repeat not added');
is($t->get('/v1/usage/stats')->data->{totalEvents}, 3,
	'stats totalEvents not incremented');

my $l = listed('cust-1');
is($l->{pagination}{total}, 3, 'list total');
is(scalar(grep { $_->{id} eq 'req-0001' } @{ $l->{events} }), 1,
	'the event is listed once');

###############################################################################
# the id is scoped to the entity, and kept exactly (no trimming)

$r = post(entityId => 'cust-2', eventType => 'call', id => 'req-0001');
is($r->status, 201, 'same id, another entity: 201');
is($r->data->{entityId}, 'cust-2', 'a separate event');
is($r->data->{id}, 'req-0001', 'with the same id');
is($t->get('/v1/usage/cust-2')->data->{totalEvents}, 1, 'counted for cust-2');
is($t->get('/v1/usage/cust-1')->data->{totalEvents}, 3,
	'cust-1 unchanged');
is(post(entityId => 'cust-2', eventType => 'call', id => 'req-0001')->status,
	200, 'and repeated for cust-2: 200');

$r = post(entityId => 'cust-3', eventType => 'call', id => ' pad ');
is($r->status, 201, 'id with spaces: 201');
is($r->data->{id}, ' pad ', 'id not trimmed');
is(post(entityId => 'cust-3', eventType => 'call', id => 'pad')->status, 201,
	'the trimmed id is another id');
is(post(entityId => 'cust-3', eventType => 'call', id => ' pad ')->status,
	200, 'the exact id repeats');
is(post(entityId => 'cust-3', eventType => 'call', id => 'PAD')->status, 201,
	'ids are case-sensitive');

###############################################################################
# validation

my $CT = 'application/json; charset=utf-8';

sub invalid {
	my ($body, $message, $name) = @_;
	my $r = $t->post_json('/v1/events', $body,
		headers => ['X-Trace-Id' => 'id-trace']);
	is($r->status, 400, "$name: 400") or diag $r->describe;
	is($r->err->{code}, 'VALIDATION_ERROR', "$name: code");
	is($r->err->{message}, $message, "$name: message");
	is($r->err->{traceId}, 'id-trace', "$name: traceId");
}

my $I_STR = 'id must be a string';
my $I_LEN = 'id must be 1 to 128 characters';
my $I_CTL = 'id must not contain control characters';

my $before = store()->{recorded};

for my $v ([5, 'number'], [1.5, 'float'], [JSON::PP::true, 'true'],
	[JSON::PP::false, 'false'], [[], 'array'], [['a'], 'array of string'],
	[{}, 'object'])
{
	invalid({ entityId => 'v', eventType => 'x', id => $v->[0] }, $I_STR,
		"id $v->[1]");
}

invalid({ entityId => 'v', eventType => 'x', id => '' }, $I_LEN, 'id ""');
invalid({ entityId => 'v', eventType => 'x', id => 'a' x 129 }, $I_LEN,
	'id of 129 chars');
invalid({ entityId => 'v', eventType => 'x', id => "\x{e9}" x 129 }, $I_LEN,
	'id of 129 two-byte chars');
invalid({ entityId => 'v', eventType => 'x', id => "\x{1F600}" x 129 },
	$I_LEN, 'id of 129 four-byte chars');

for my $c ("\x00", "\x01", "\t", "\n", "\x1f", "\x7f") {
	my $n = sprintf 'U+%04X', ord $c;
	invalid({ entityId => 'v', eventType => 'x', id => "a${c}b" }, $I_CTL,
		"id with $n");
}
invalid({ entityId => 'v', eventType => 'x', id => "\n" }, $I_CTL,
	'id of a newline only (not trimmed)');

# in order, after the entityId, eventType and metadata rules
invalid({ entityId => '', eventType => 'x', id => 5 },
	"entityId is required, $I_STR", 'entityId and id');
invalid({ entityId => 7, eventType => '', metadata => [], id => '' },
	'entityId must be a string, eventType is required, '
	. "metadata must be an object, $I_LEN", 'all rules in order');
invalid({ eventType => 'x', id => "a\x01", value => 'abc',
	timestamp => 'nope' },
	"entityId is required, entityId must be a string, $I_CTL, "
	. 'value must be a finite number, '
	. 'timestamp must be a valid ISO8601 date', 'with value and timestamp');

is(store()->{recorded}, $before, 'nothing invalid was recorded');

# the accepted edges, in code points
for my $v (['a' x 128, '128 chars'], ["\x{e9}" x 128, '128 two-byte chars'],
	["\x{20ac}" x 128, '128 three-byte chars'],
	["\x{1F600}" x 128, '128 four-byte chars'], ['x', 'one char'],
	["caf\x{e9}-\x{65e5}\x{672c} \"q\" \\", 'unicode, quotes, backslash'],
	["a\x{80}b", 'a C1 control'])
{
	$r = post(entityId => 'ok', eventType => 'x', id => $v->[0]);
	is($r->status, 201, "id of $v->[1]: 201") or diag $r->describe;
	is($r->data->{id}, $v->[0], "id of $v->[1]: kept");
	$r = post(entityId => 'ok', eventType => 'x', id => $v->[0]);
	is($r->status, 200, "id of $v->[1]: repeat 200");
}
is($t->get('/v1/usage/ok')->data->{totalEvents}, 7, 'seven distinct ids');

$t->finish();

###############################################################################
# a duplicate whose raw event the log evicted

$t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m max_events=3;'))
	->run();

$r = post(entityId => 'evict', eventType => 'call', id => 'A',
	metadata => { first => 1 });
is($r->status, 201, 'id A: 201');
for my $i (1 .. 5) {
	post(entityId => "other$i", eventType => 'call');
}
$s = store();
is($s->{events}, 3, 'three raw events kept');
is($s->{evictions}, 3, 'A was evicted from the raw log');
is(listed('evict')->{pagination}{total}, 0, 'A no longer listed');
is($t->get('/v1/usage/evict')->data->{totalEvents}, 1, 'A still counted');

$r = post(entityId => 'evict', eventType => 'call', id => 'A',
	metadata => { first => 2 });
is($r->status, 200, 'repeat of an evicted event: 200') or diag $r->describe;
is_deeply([sort keys %{ $r->data }],
	[qw(alreadyRecorded entityId id note)], 'alreadyRecorded data');
is($r->data->{id}, 'A', 'its id');
is($r->data->{entityId}, 'evict', 'its entityId');
is($r->data->{alreadyRecorded}, JSON::PP::true, 'alreadyRecorded true');
like($r->data->{note} // '', qr/\S/, 'a note');
like($r->body, qr/"alreadyRecorded":true/, 'a JSON boolean');

$s = store();
is($s->{duplicates}, 1, 'counted as a duplicate');
is($s->{recorded}, 6, 'nothing new recorded');
is($s->{events}, 3, 'nothing new stored');
is(listed('evict')->{pagination}{total}, 0, 'still not listed');
is($t->get('/v1/usage/evict')->data->{totalEvents}, 1, 'still counted once');
is($t->get('/v1/usage/stats')->data->{totalEvents}, 6, 'stats total');

$t->finish();

###############################################################################
# concurrent duplicates on two workers: exactly one 201

$t = Test::Usage->new();
$t->write_config(api_conf(listen => 'reuseport'))->run();

my $N = 20;
my $body = json_encode({ entityId => 'race', eventType => 'call',
	id => 'same-id', metadata => { k => 'v' } });
my $req = "POST /v1/events HTTP/1.1\r\nHost: localhost\r\n"
	. "Connection: close\r\nContent-Type: application/json\r\n"
	. 'Content-Length: ' . length($body) . "\r\n\r\n$body";

# all connections are open (and spread over the workers) before any request
my @conns = map { $t->connect() } 1 .. $N;
is(scalar(grep { defined } @conns), $N, "$N connections");
my $sent = grep { $_ && $_->send_raw($req) } @conns;
is($sent, $N, "$N requests sent at once");

my (%status, %data);
for my $c (@conns) {
	next unless $c;
	my $r = $c->read_response('POST');
	$c->close();
	$status{ $r->status }++;
	$data{ json_encode($r->data) }++ if $r->status =~ /^20[01]$/;
}
is($status{201}, 1, 'exactly one 201') or diag explain \%status;
is($status{200}, $N - 1, 'the others 200');
is(scalar keys %data, 1, 'every answer holds the same event');

$s = store();
is($s->{recorded}, 1, 'recorded once');
is($s->{duplicates}, $N - 1, 'the others are duplicates');
is($t->get('/v1/usage/race')->data->{totalEvents}, 1, 'total count 1');
is(listed('race')->{pagination}{total}, 1, 'listed once');

# the same with forked clients, keepalive, several ids at once
my @kids;
for my $k (1 .. 4) {
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0) {
		my $out = '';
		my $c = $t->connect();
		for my $i (1 .. 10) {
			my $r = $c->request('POST', '/v1/events', keepalive => 1,
				json => { entityId => 'race2', eventType => 'call',
					id => "id-$i" });
			$out .= "$i " . $r->status . "\n";
		}
		$t->write_file("kid-$k.out", $out);
		POSIX::_exit(0);
	}
	push @kids, $pid;
}
waitpid($_, 0) for @kids;

my %per;
for my $k (1 .. 4) {
	for my $line (split /\n/, $t->read_file("kid-$k.out")) {
		my ($i, $st) = split / /, $line;
		$per{$i}{$st}++;
	}
}
is(scalar(grep { ($per{$_}{201} // 0) == 1 && ($per{$_}{200} // 0) == 3 }
	1 .. 10), 10, 'four clients, ten ids: one 201 and three 200 per id')
	or diag explain \%per;
is($t->get('/v1/usage/race2')->data->{totalEvents}, 10, 'ten events');

$t->finish();

###############################################################################
# max_ids bounds the index: an evicted id is accepted again (documented)

$t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m max_ids=4;'))
	->run();

for my $i (1 .. 6) {
	is(post(entityId => 'bound', eventType => 'call', id => "id$i")->status,
		201, "id$i: 201");
}
is(post(entityId => 'bound', eventType => 'call', id => 'id6')->status, 200,
	'a recent id is still known');

$r = post(entityId => 'bound', eventType => 'call', id => 'id1');
is($r->status, 201, 'the oldest id, evicted from the index: 201 again');
is($r->data->{id}, 'id1', 'with its id');

$s = store();
ok($s->{idEvictions} > 0, "store.idEvictions counted ($s->{idEvictions})");
ok($s->{ids} <= 5, "store.ids bounded ($s->{ids})");
is($s->{duplicates}, 1, 'one duplicate');
is($t->get('/v1/usage/bound')->data->{totalEvents}, 7,
	'the re-accepted id counted again');

$t->done_testing();
