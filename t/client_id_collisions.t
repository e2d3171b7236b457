#!/usr/bin/perl

# Client ids whose hashes collide stay distinct.  The module built with
# -DNGX_HTTP_USAGE_ID_HASH_BITS=4 (scripts/test.sh builds it; the test
# fails without it) keeps 16 hash values for all ids, so nearly every id
# shares its hash with others: a hit must be a hit on entity and id
# themselves.  Distinct ids of one entity and equal ids of two entities are
# each stored once and answered with their own event, before and after a
# reload, a reload that resizes the zone (the store is copied), a restart
# from the state file, and a restart from a version 1 state file (whose
# ids are rebuilt from their events).  The normal build's hash is keyed
# per zone (SipHash): t/client_ids.t covers it.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf);
use Test::UsageState;

my $module = $ENV{USAGE_MODULE_COLLIDE}
	|| "$Test::Usage::REPO/build/collide/ngx_http_usage_module.so";
BAIL_OUT("no module with 4-bit id hashes at $module (scripts/test.sh "
	. "builds it with ID_HASH_BITS=4 scripts/build.sh)") unless -f $module;

my $t = Test::Usage->new(module => $module);
mkdir $t->dir() . '/state' or die "mkdir: $!";
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m '
	. 'state=%%TESTDIR%%/state/usage.state state_interval=10m;'))->run();

my @ENTITIES = ('tenant-a', 'tenant-b', 'tenant-c');
my $IDS = 40;       # per entity: 120 ids in 16 hash values

my %stored;         # "entity id" => the event as first answered

for my $i (1 .. $IDS) {
	for my $e (@ENTITIES) {
		my $id = "req-$i";
		my $r = $t->post_json('/v1/events', { entityId => $e,
			eventType => 'call', id => $id,
			metadata => { owner => $e, n => $i } });
		$stored{"$e $id"} = $r->status == 201 ? $r->data : $r->status;
	}
}

my @not_created = grep { ref $stored{$_} ne 'HASH' } sort keys %stored;
is(scalar @not_created, 0, 'every distinct (entity, id) is created: 201')
	or diag "not 201: @not_created[0 .. ($#not_created < 9 ? $#not_created : 9)]";

my $st = $t->get('/v1/usage/stats')->data->{store};
is($st->{duplicates}, 0, 'no event taken for a duplicate');
is($st->{ids}, @ENTITIES * $IDS, 'one client id each');

for my $e (@ENTITIES) {
	is($t->get("/v1/usage/$e")->data->{totalEvents}, $IDS,
		"$e: $IDS events counted");
}

# every repeat is 200 with its own event: its entity, its metadata
sub repeats_are_own {
	my ($name) = @_;
	my (@wrong, $ok);
	for my $key (sort keys %stored) {
		my ($e, $id) = split / /, $key;
		my $r = $t->post_json('/v1/events', { entityId => $e,
			eventType => 'call', id => $id, metadata => { other => 1 } });
		my $d = $r->data // {};
		if ($r->status == 200 && ($d->{entityId} // '') eq $e
			&& ($d->{id} // '') eq $id
			&& ($d->{metadata}{owner} // '') eq $e
			&& ($d->{metadata}{n} // 0) == (split /-/, $id)[1])
		{
			$ok++;
		} else {
			push @wrong, "$key: " . $r->status . ' ' . $r->body;
		}
	}
	is(scalar @wrong, 0, "$name: each repeat is 200 with its own event")
		or diag join "\n", @wrong[0 .. ($#wrong < 4 ? $#wrong : 4)];
	for my $e (@ENTITIES) {
		is($t->get("/v1/usage/$e")->data->{totalEvents}, $IDS,
			"$name: $e still has $IDS events");
	}
}

repeats_are_own('before any reload');

# a new id that collides with every stored hash value is still new
my $r = $t->post_json('/v1/events', { entityId => 'tenant-z',
	eventType => 'call', id => 'fresh-1' });
is($r->status, 201, 'a new id among colliding ones: 201');
is($t->post_json('/v1/events', { entityId => 'tenant-z',
	eventType => 'call', id => 'fresh-1' })->status, 200,
	'and its repeat: 200');

# the reload keeps the zone; a resize copies it through a snapshot,
# hashing every id anew under the new zone's key
ok($t->reload(), 'reload');
repeats_are_own('after a reload');

my $conf = $t->read_file('nginx.conf');
$conf =~ s/usage:1m/usage:2m/;
$t->write_file('nginx.conf', $conf);
ok($t->reload(), 'reload that resizes the zone');
like($t->read_file('error.log'), qr/loaded from the resized zone/,
	'the store was copied');
repeats_are_own('after a resize');

# a restart from the state file saved at the stop
$t->stop();
ok(-s $t->dir() . '/state/usage.state', 'state file saved');
my $saved = $t->read_file('state/usage.state');
my $parsed = Test::UsageState::parse($saved);
is(scalar @{ $parsed->{ids} }, @ENTITIES * $IDS + 1,
	'the file holds every id with its entity');
is(scalar(grep { $stored{"$_->{entity} $_->{id}"} || $_->{id} eq 'fresh-1' }
	@{ $parsed->{ids} }), @ENTITIES * $IDS + 1,
	'the file holds the ids\' own bytes');
$t->run();
repeats_are_own('after a restart from the state file');

# a version 1 file: the ids come back from their events in the log
$t->stop();
$t->write_file('state/usage.state', Test::UsageState::to_v1($saved));
my $mark = length $t->read_file('error.log');
$t->run();
like(substr($t->read_file('error.log'), $mark), qr/loaded from/,
	'a version 1 file is loaded');
is($t->get('/v1/usage/stats')->data->{store}{ids}, @ENTITIES * $IDS + 1,
	'version 1: every id whose event is in the log is back');
repeats_are_own('after a restart from a version 1 file');

$t->done_testing();
