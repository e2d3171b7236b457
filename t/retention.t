#!/usr/bin/perl

# Retention: with retention=2s, an event is returned at once and no longer
# after 2 s (list, summary, history); newer events still are.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf wait_until);
use Time::HiRes qw(sleep time);

my $t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m retention=2s;'))
	->run();

my $posted = time();
is($t->post_event('old', 'x')->status, 201, 'posted');
is($t->get('/v1/events?entityId=old')->data->{pagination}{total}, 1,
	'returned at once');
is($t->get('/v1/usage/old')->data->{totalEvents}, 1, 'summary at once');

sleep 1;
$t->post_event('mid', 'x');

# after 2 s (plus a little)
sleep(2.3 - (time() - $posted)) if time() - $posted < 2.3;

my $r = $t->get('/v1/events');
is_deeply([map { $_->{entityId} } @{ $r->data->{events} }], ['mid'],
	'expired event not listed');
is($r->data->{pagination}{total}, 1, 'total without the expired event');
is($t->get('/v1/usage/old')->data->{totalEvents}, 0, 'not in the summary');
is_deeply($t->get('/v1/usage/old/history?interval=minute')->data->{dataPoints},
	[], 'not in the history');
is($t->get('/v1/events?entityId=old')->data->{pagination}{total}, 0,
	'not found by filter');
is($t->get('/v1/usage/mid')->data->{totalEvents}, 1, 'newer event kept');

# and the newer one goes too
my $gone = wait_until {
	$t->get('/v1/events')->data->{pagination}{total} == 0
} 3;
ok($gone, 'newer event expires as well');
my $s = $t->get('/v1/usage/stats')->data;
is($s->{eventsLastHour}, 0, 'eventsLastHour without expired events');

$t->done_testing();
