#!/usr/bin/perl

# A state file whose checksum is right but whose records hold what the API
# refuses (written by hand, or by a module that let invalid UTF-8 in): an
# event type, an entity or a client id that is not valid UTF-8, metadata
# that is not JSON or not valid UTF-8.  Those records are left out and
# counted in a warning, the rest of the store is loaded, and every answer
# stays strict JSON.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf);
use Test::UsageState;

my $t = Test::Usage->new();
mkdir $t->dir() . '/state' or die "mkdir: $!";
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m '
	. 'state=%%TESTDIR%%/state/usage.state state_interval=10m;'))->run();

sub post {
	my (%ev) = @_;
	my $r = $t->post_json('/v1/events', \%ev);
	is($r->status, 201, "posted $ev{entityId} $ev{eventType}")
		or diag $r->describe;
}

post(entityId => 'keep-me', eventType => 'call', metadata => { a => 1 });
post(entityId => 'keep-me', eventType => 'call', metadata => { s => 'ab' });
post(entityId => 'keep-me', eventType => 'call', id => 'idok');
post(entityId => 'keep-me', eventType => 'call', metadata => { good => 1 });
post(entityId => 'keep-me', eventType => 'padX');
post(entityId => 'poison', eventType => 'call');

$t->stop();
my $bytes = $t->read_file('state/usage.state');
my $s = Test::UsageState::parse($bytes);

# each edit keeps the length: only the checksum needs to follow
sub put {
	my ($at, $old, $new) = @_;
	die "edit of another length" unless length $old == length $new;
	is(substr($bytes, $at, length $old), $old, "the file holds $old");
	substr($bytes, $at, length $new) = $new;
}

my ($type) = grep { $_->{name} eq 'padX' } @{ $s->{types} };
put($type->{at}, 'padX', "x\xc3\xc3y");
my ($entity) = grep { $_->{name} eq 'poison' } @{ $s->{entities} };
put($entity->{at}, 'poison', "po\xed\xa0\x80n");
for my $raw (@{ $s->{raw} }) {
	if ($raw->{metadata} eq '{"a":1}') {
		put($raw->{metadata_at}, '{"a":1}', '{"a"}1}');
	} elsif ($raw->{metadata} eq '{"s":"ab"}') {
		put($raw->{metadata_at}, '{"s":"ab"}', "{\"s\":\"\xc3\xe5\"}");
	} elsif ($raw->{id} eq 'idok') {
		put($raw->{id_at}, 'idok', "i\xc0\xafk");
	}
}
$t->write_file('state/usage.state', Test::UsageState::reseal($bytes));

my $mark = length $t->read_file('error.log');
$t->run();
my $log = substr($t->read_file('error.log'), $mark);
like($log, qr/(\d+) records left out, their names or metadata are not valid UTF-8 or JSON/,
	'the records left out are reported');
my ($n) = $log =~ /(\d+) records left out/;
is($n, 5, 'a type, an entity, two metadata and an id: 5 records');
like($log, qr/loaded from/, 'the rest is loaded');

my @answers = (
	'/v1/usage/stats', '/v1/events', '/v1/events?entityId=keep-me',
	'/v1/usage/keep-me', '/v1/usage/keep-me/history?interval=minute',
	'/v1/usage/poison', '/info',
);
for my $path (@answers) {
	my $r = $t->get($path);
	my (undef, $err) = $r->strict_json();
	is($r->status, 200, "$path: 200");
	ok(!defined $err, "$path: strict JSON") or diag $err;
}

my $list = $t->get('/v1/events?entityId=keep-me')->data->{events};
is_deeply([map { $_->{metadata} } @$list], [{ good => 1 }],
	'the list holds the one event left whole');
my $sum = $t->get('/v1/usage/keep-me')->data;
is_deeply($sum->{byEventType}, { call => 4 },
	'the totals of a valid type are kept, the invalid type is gone');
is($t->get('/v1/usage/poison')->data->{totalEvents}, 0,
	'the invalid entity is gone');
is_deeply([sort keys %{ $t->get('/v1/usage/stats')->data->{eventTypes} }],
	['call'], 'stats: only the valid type');

$t->done_testing();
