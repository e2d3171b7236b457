#!/usr/bin/perl

# Per-entity bounds (usage_zone entity_types=N entity_share=P%): one entity
# that invents event types cannot fill the zone and make the store give
# up other entities' totals.  Past entity_types types, or past its share
# of the series and buckets, an entity's new event is refused with 429
# ENTITY_LIMIT (no Retry-After: a retry soon does not help), counted in
# store.entityLimited and usage_events_entity_limited_total; other
# entities, and the entity's existing types, go on.  Tracked traffic past
# a bound is counted the same way and never fails the request.  A reload
# changes the bounds; invalid values stop nginx -t.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf);

sub post {
	my ($t, $entity, $type) = @_;
	return $t->post_json('/v1/events', { entityId => $entity,
		eventType => $type });
}

sub store { $_[0]->get('/v1/usage/stats')->data->{store} }

###############################################################################
# entity_types: the sixth type of one entity is refused, and only that

my $t = Test::Usage->new();
$t->write_config(api_conf(
	zone => 'usage_zone zone=usage:1m entity_types=5;',
	server => 'location = /metrics { usage_metrics usage; }'))->run();

is(post($t, 'greedy', "t$_")->status, 201, "type $_ of 5: 201") for 1 .. 5;

my $r = post($t, 'greedy', 't6');
is($r->status, 429, 'a sixth type: 429');
is($r->json->{error}{code}, 'ENTITY_LIMIT', 'code ENTITY_LIMIT');
is($r->json->{error}{message},
	'This entity already has 5 event types, the most one entity may have',
	'the message says which bound');
ok($r->json->{error}{traceId}, 'with a trace id');
is($r->header('x-trace-id'), $r->json->{error}{traceId},
	'the same trace id in the header');
ok(!defined $r->header('retry-after'), 'no Retry-After');

is(post($t, 'greedy', 't1')->status, 201, 'an existing type: 201');
is(post($t, 'other', "t$_")->status, 201, "another entity, type $_: 201")
	for 1 .. 5;

my $sum = $t->get('/v1/usage/greedy')->data;
is($sum->{totalEvents}, 6, 'greedy: its 6 accepted events');
ok(!exists $sum->{byEventType}{t6}, 'the refused type is not counted');
is(store($t)->{entityLimited}, 1, 'store.entityLimited: 1');
like($t->get('/metrics')->body,
	qr/^usage_events_entity_limited_total\{zone="usage"\} 1$/m,
	'usage_events_entity_limited_total 1');

# a reload raises the bound
my $conf = $t->read_file('nginx.conf');
$conf =~ s/entity_types=5/entity_types=10/;
$t->write_file('nginx.conf', $conf);
ok($t->reload(), 'reload with entity_types=10');
is(post($t, 'greedy', 't6')->status, 201, 'after the reload: the sixth type');

$t->finish();

###############################################################################
# entity_share: an entity that holds 2% of the aggregates is refused new
# series and buckets; another entity is not

$t = Test::Usage->new();
$t->write_config(api_conf(
	zone => 'usage_zone zone=usage:1m entity_types=0 entity_share=2%;'))
	->run();

my %status;
my $accepted = 0;
for my $i (1 .. 300) {
	my $s = post($t, 'greedy', "type-$i")->status;
	$status{$s}++;
	$accepted++ if $s == 201;
}
ok($status{201} && $status{201} > 20, "the first types are taken ($status{201})");
ok($status{429} && $status{429} > 100, "then 429 ($status{429})");
is(join(',', sort keys %status), '201,429', 'nothing but 201 and 429');
$r = post($t, 'greedy', 'type-300');
is($r->json->{error}{message},
	'This entity holds its whole share (2%) of the usage store',
	'the share message');
is(post($t, 'greedy', 'type-1')->status, 201,
	'an existing bucket of the entity: 201');
is($t->get('/v1/usage/greedy')->data->{totalEvents}, $accepted + 1,
	'greedy: every accepted event counted');
is(post($t, 'victim', 'call')->status, 201, 'another entity: 201');
is(store($t)->{entityLimited}, $status{429} + 1,
	'store.entityLimited counts each refusal');

$t->finish();

###############################################################################
# the finding: a client inventing types in a small zone.  With the default
# bounds the victim keeps its totals; with them off (entity_types=0
# entity_share=100%) the store gives them up

for my $case (['default bounds', '', 3], ['no bounds',
	' entity_types=0 entity_share=100%', undef])
{
	my ($name, $params, $want) = @$case;
	$t = Test::Usage->new();
	$t->write_config(api_conf(
		zone => "usage_zone zone=usage:128k$params;"))->run();

	is(post($t, 'victim', 'call')->status, 201, "$name: victim $_")
		for 1 .. 3;
	my $c = $t->connect();
	for my $i (1 .. 3000) {
		my $resp = $c->request('POST', '/v1/events', keepalive => 1,
			json => qq({"entityId":"attacker","eventType":"t$i"}));
		$c = $t->connect() unless $resp->status;
	}
	my $victim = $t->get('/v1/usage/victim')->data->{totalEvents};
	if (defined $want) {
		is($victim, $want, "$name: the victim's totals are kept");
		my $n = $t->get('/v1/usage/attacker')->data->{totalEvents};
		ok($n > 0 && $n <= 100, "$name: the attacker has at most 100 "
			. "types, its share of a 128k zone ($n)");
	} else {
		isnt($victim, 3, "$name: the victim's totals were given up "
			. "(what the bounds prevent)");
	}
	$t->finish();
}

###############################################################################
# long client ids are bounded in bytes (a quarter of the zone): past it the
# oldest ids are forgotten, not other entities' totals

$t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:256k;'))->run();

is(post($t, 'victim', 'call')->status, 201, "ids: victim $_") for 1 .. 3;
my $long = "\x{1F600}" x 128;      # 512 bytes: a 1k slab slot an id
my $bad = 0;
for my $i (1 .. 200) {
	my $r = $t->post_json('/v1/events', { entityId => 'long-ids',
		eventType => 'call', id => substr("$i-$long", 0, 128) });
	$bad++ unless $r->status == 201;
}
is($bad, 0, 'ids: 200 events with 512-byte ids, all 201');
my $ids = store($t);
ok($ids->{ids} < 200 && $ids->{idEvictions} > 0,
	"ids: the oldest forgotten for bytes ($ids->{ids} kept, "
	. "$ids->{idEvictions} forgotten)");
is($ids->{bucketEvictions}, 0, 'ids: no bucket given up for them');
is($t->get('/v1/usage/victim')->data->{totalEvents}, 3,
	'ids: the victim keeps its totals');

$t->finish();

###############################################################################
# tracked traffic past a bound: the request is served, the event counted
# as limited

$t = Test::Usage->new();
$t->write_config(api_conf(
	zone => 'usage_zone zone=usage:1m entity_types=2;',
	server => 'location /metered { usage_track usage entity=client '
		. 'event_type=$arg_t; return 204; }'))->run();

is($t->get("/metered?t=k$_")->status, 204, "tracked type $_: 204")
	for 1 .. 4;
Test::Usage::wait_until(sub { store($t)->{entityLimited} >= 2 }, 3);
is(store($t)->{entityLimited}, 2, 'two tracked events past the bound');
is($t->get('/v1/usage/client')->data->{totalEvents}, 2,
	'the two within it counted');

$t->finish();

###############################################################################
# invalid values

$t = Test::Usage->new();
for my $case (['entity_share=0%', qr/invalid entity_share "entity_share=0%": a share of the zone from 1% to 100% is expected/],
	['entity_share=101%', qr/invalid entity_share/],
	['entity_share=10', qr/invalid entity_share/],
	['entity_types=-1', qr/invalid entity_types "entity_types=-1": a number from 0 to \d+ is expected/],
	['entity_types=x', qr/invalid entity_types/])
{
	my ($param, $re) = @$case;
	my ($code, $out) = $t->check_config(api_conf(
		zone => "usage_zone zone=usage:1m $param;"));
	isnt($code, 0, "$param: nginx -t fails");
	like($out, qr/\[emerg\].*$re/, "$param: message") or diag $out;
}

done_testing();
