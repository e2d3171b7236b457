#!/usr/bin/perl

# The store survives a HUP reload (same zone): events, stats and startTime
# are kept, new workers serve them, new events go on; also with a reload that
# changes other directives (service name) and after two reloads in a row;
# a reload that resizes the zone keeps nginx serving from a new zone.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf wait_until);
use Time::HiRes qw(sleep);

my $t = Test::Usage->new();
$t->write_config(api_conf(listen => 'reuseport',
	location => 'add_header X-Worker $pid always;'))->run();

my @ids;
for my $i (1 .. 5) {
	push @ids, $t->post_event('rl', "t$i")->data->{id};
	sleep 0.002;
}
my $before = $t->get('/v1/usage/stats')->data;
is($before->{totalEvents}, 5, 'five events before reload');

my @old = $t->worker_pids();
ok($t->reload(), 'reloaded');
my @new = $t->worker_pids();
is(scalar @new, 2, 'two new workers');
ok(!(grep { my $o = $_; grep { $_ == $o } @new } @old), 'all workers new');

my %seen;
my $ok = 0;
for (1 .. 20) {
	my $r = $t->get('/v1/events?entityId=rl');
	$seen{ $r->header('X-Worker') // '' } = 1;
	$ok++ if $r->data->{pagination}{total} == 5;
}
is($ok, 20, 'events kept after reload');
ok(!(grep { my $w = $_; grep { $_ == $w } @old } keys %seen),
	'answered by new workers');

my $r = $t->get('/v1/events?entityId=rl');
is_deeply([map { $_->{id} } @{ $r->data->{events} }], [reverse @ids],
	'same events in the same order');

my $after = $t->get('/v1/usage/stats')->data;
is($after->{startTime}, $before->{startTime}, 'startTime survives reload');
ok($after->{uptime}{ms} >= $before->{uptime}{ms}, 'uptime goes on');
is($after->{totalEvents}, 5, 'stats after reload');

is($t->post_event('rl', 'after')->status, 201, 'post after reload');
is($t->get('/v1/usage/rl')->data->{totalEvents}, 6, 'summary after reload');

###############################################################################
# reload with another config (same zone), twice

my $conf = $t->read_file('nginx.conf');
$conf =~ s/(usage_zone zone=usage:1m;)/$1\n    usage_service_name renamed;/;
$t->write_file('nginx.conf', $conf);

ok($t->reload(), 'reloaded with a changed config');
is($t->get('/health')->json->{service}, 'renamed', 'new config active');
is($t->get('/v1/usage/rl')->data->{totalEvents}, 6, 'events kept');

ok($t->reload(), 'reloaded again');
is($t->get('/v1/usage/rl')->data->{totalEvents}, 6, 'events kept again');
is($t->get('/v1/usage/stats')->data->{startTime}, $before->{startTime},
	'startTime kept again');

###############################################################################
# reload with a changed zone size: nginx maps a new zone; the old one is
# still mapped, and its store is copied into the new one

my $list = $t->get('/v1/events?entityId=rl')->data;
my $sum = $t->get('/v1/usage/rl')->data;

$conf = $t->read_file('nginx.conf');
$conf =~ s/usage_zone zone=usage:1m;/usage_zone zone=usage:2m;/;
$t->write_file('nginx.conf', $conf);

ok($t->reload(), 'reloaded with a resized zone');
is($t->get('/health')->status, 200, 'healthy after resize');
my $st = $t->get('/v1/usage/stats')->data;
is($st->{store}{rawBytes}, 1048576, 'raw log of the new size');
is_deeply($t->get('/v1/events?entityId=rl')->data, $list,
	'raw events carried into the resized zone');
is_deeply($t->get('/v1/usage/rl')->data->{byEventType}, $sum->{byEventType},
	'aggregates carried into the resized zone');
is($st->{startTime}, $before->{startTime}, 'startTime carried');
like($t->read_file('error.log'),
	qr/\[notice\].*usage zone "usage": loaded from the resized zone/,
	'the copy is reported');
is($t->post_event('rl', 'resized')->status, 201, 'post into the new zone');
is($t->get('/v1/events?entityId=rl')->data->{pagination}{total},
	$list->{pagination}{total} + 1, 'the new zone stores');

###############################################################################
# shrinking: what fits is kept, the newest raw events first; totals stay

for my $i (1 .. 300) {
	$t->post_json('/v1/events', { entityId => 'shrink', eventType => 'x',
		metadata => { pad => 'p' x 200 } });
}

$conf = $t->read_file('nginx.conf');
$conf =~ s/usage_zone zone=usage:2m;/usage_zone zone=usage:64k;/;
$t->write_file('nginx.conf', $conf);

ok($t->reload(), 'reloaded with a much smaller zone');
$st = $t->get('/v1/usage/stats')->data;
ok($st->{store}{events} < 300, 'the raw log keeps what fits');
is($t->get('/v1/usage/shrink')->data->{totalEvents}, 300,
	'totals carried whole');
my $newest = $t->get('/v1/events?entityId=shrink&limit=1')->data;
is($newest->{events}[0]{entityId}, 'shrink', 'the newest raw events kept');

###############################################################################
# the ring of a live zone cannot be resized in place: changing raw= without
# changing the size is refused, and the running configuration stays

$conf = $t->read_file('nginx.conf');
$conf =~ s/usage_zone zone=usage:64k;/usage_zone zone=usage:64k raw=30%;/;
$t->write_file('nginx.conf', $conf);
ok(!$t->reload(timeout => 2, may_fail => 1), 'no new workers');
ok(wait_until(sub { $t->read_file('error.log') =~ /raw=30% cannot change/ }, 5),
	'a raw= change alone is refused with an emerg');
is($t->get('/v1/usage/shrink')->data->{totalEvents}, 300,
	'the old configuration keeps serving');
$t->allow_emerg(qr/raw=30% cannot change/);

$t->done_testing();
