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
use Test::Usage qw(api_conf);
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
# reload with a changed zone size: a new, empty zone, reported in the log;
# nginx keeps serving

$conf = $t->read_file('nginx.conf');
$conf =~ s/usage_zone zone=usage:1m;/usage_zone zone=usage:2m;/;
$t->write_file('nginx.conf', $conf);

ok($t->reload(), 'reloaded with a resized zone');
is($t->get('/health')->status, 200, 'healthy after resize');
my $st = $t->get('/v1/usage/stats')->data;
is($st->{store}{maxEvents}, 8192, 'maxEvents of the new size');
my $kept = $t->get('/v1/events?entityId=rl')->data->{pagination}{total};
# nginx maps a resized zone anew: it starts empty, and the log says so
is($kept, 0, 'resized zone starts empty');
like($t->read_file('error.log'),
	qr/\[warn\].*usage zone "usage" was resized from 1048576 to 2097152 bytes/,
	'resize is reported, not silent');
is($t->post_event('rl', 'resized')->status, 201, 'post into the new zone');
is($t->get('/v1/events?entityId=rl')->data->{pagination}{total}, $kept + 1,
	'the new zone stores');

$t->done_testing();
