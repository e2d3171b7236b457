#!/usr/bin/perl

# The store is shared by the worker processes: with "listen ... reuseport"
# and X-Worker: $pid, an event POSTed through one worker is read through the
# other one (and the other way round), and both see the same stats.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf);

my $t = Test::Usage->new();
$t->write_config(api_conf(listen => 'reuseport',
	location => 'add_header X-Worker $pid always;'))->run();

my @workers = $t->worker_pids();
is(scalar @workers, 2, 'two workers');

# POST through worker A
my $r = $t->post_event('shared-a', 'x');
is($r->status, 201, 'posted');
my $wa = $r->header('X-Worker');
ok($wa, "posted through worker $wa");
my $id = $r->data->{id};

# find worker B with fresh connections
sub on_other {
	my ($not, $path) = @_;
	for (1 .. 200) {
		my $r = $t->get($path);
		my $w = $r->header('X-Worker') // '';
		return $r if $w && $w ne $not;
	}
	return undef;
}

$r = on_other($wa, '/v1/events?entityId=shared-a');
ok($r, 'answered by the other worker') or BAIL_OUT('one worker only?');
my $wb = $r->header('X-Worker');
isnt($wb, $wa, "read through worker $wb");
is($r->data->{pagination}{total}, 1, 'other worker sees the event');
is($r->data->{events}[0]{id}, $id, 'same event');

# and the other way round: POST through B, read through A
my $posted;
for (1 .. 200) {
	my $p = $t->post_event('shared-b', 'y');
	if (($p->header('X-Worker') // '') eq $wb) {
		$posted = $p;
		last;
	}
}
ok($posted, 'posted through worker B');
$r = on_other($wb, '/v1/events?entityId=shared-b');
ok($r && $r->header('X-Worker') eq $wa, 'read through worker A');
ok($r && $r->data->{pagination}{total} >= 1, 'worker A sees B\'s event');

# same stats and start time from both workers
my $sa = on_other($wb, '/v1/usage/stats');
my $sb = on_other($wa, '/v1/usage/stats');
is($sa->data->{totalEvents}, $sb->data->{totalEvents}, 'same totals');
is($sa->data->{startTime}, $sb->data->{startTime}, 'same startTime');
is($sa->data->{uniqueEntities}, 2, 'uniqueEntities');

# summary through the other worker
$r = on_other($wa, '/v1/usage/shared-a');
is($r->data->{totalEvents}, 1, 'summary through the other worker');

$t->done_testing();
