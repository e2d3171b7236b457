#!/usr/bin/perl

# GET /v1/usage/{entityId}/history: minute, hour (default) and day buckets
# aligned to UTC (floor(createdAt / size) * size), ascending, only buckets
# with events; invalid interval; since/until and the period echo; unknown and
# invalid entities.  Two minute buckets are exercised when the test runs close
# to a minute boundary (it waits at most a few seconds for one).

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf iso_ms $ISO_RE);
use Time::HiRes qw(sleep time);

my $t = Test::Usage->new();
$t->write_config(api_conf())->run();

my @created;
sub post {
	my ($e, $type) = @_;
	my $r = $t->post_event($e, $type);
	push @created, $r->data->{createdAt} if $e eq 'hist';
	return $r;
}

post('hist', 'a') for 1 .. 3;
post('other', 'a');

# cross a minute boundary when one is near: at most 4 s of waiting
my $ms = time() * 1000;
my $to_next = 60000 - ($ms % 60000);
if ($to_next < 4000) {
	sleep(($to_next + 50) / 1000);
	post('hist', 'b') for 1 .. 2;
}
post('hist', 'c');

sub buckets {
	my ($size, @c) = @_;
	my %n;
	$n{ int($_ / $size) * $size }++ for @c;
	return [map { { timestamp => iso_ms($_), count => $n{$_}, value => $n{$_} } }
		sort { $a <=> $b } keys %n];
}

my %size = (minute => 60000, hour => 3600000, day => 86400000);

for my $interval (qw(minute hour day)) {
	my $r = $t->get("/v1/usage/hist/history?interval=$interval");
	is($r->status, 200, "$interval: 200") or diag $r->describe;
	my $d = $r->data;
	is($d->{entityId}, 'hist', "$interval: entityId");
	is($d->{interval}, $interval, "$interval: interval");
	is_deeply($d->{dataPoints}, buckets($size{$interval}, @created),
		"$interval: buckets aligned to UTC, ascending");
	like($r->body, qr/"count":\d+[,}]/, "$interval: count is a number");
	like($d->{period}{since} // '', $ISO_RE, "$interval: default since");
	like($d->{period}{until} // '', $ISO_RE, "$interval: default until");
}

my $r = $t->get('/v1/usage/hist/history');
is($r->data->{interval}, 'hour', 'default interval');
is_deeply($r->data->{dataPoints}, buckets(3600000, @created), 'default hour');

my @ts = map { $_->{timestamp} } @{ $r->data->{dataPoints} };
is_deeply(\@ts, [sort @ts], 'ascending');

$r = $t->get('/v1/usage/hist/history?interval=minute');
my $sum = 0;
$sum += $_->{count} for @{ $r->data->{dataPoints} };
is($sum, scalar @created, 'minute buckets add up');

SKIP: {
	skip 'no minute boundary crossed', 1 unless $to_next < 4000;
	is(scalar @{ $r->data->{dataPoints} }, 2, 'two minute buckets');
}

###############################################################################

$r = $t->get('/v1/usage/nobody/history?interval=day');
is($r->status, 200, 'unknown entity');
is_deeply($r->data->{dataPoints}, [], 'unknown entity: no buckets');
like($r->body, qr/"dataPoints":\[\]/, 'dataPoints rendered as []');

$r = $t->get('/v1/usage/hist/history?since=2100');
is_deeply($r->data->{dataPoints}, [], 'since in the future');
is($r->data->{period}{since}, '2100', 'since echoed');

$r = $t->get('/v1/usage/hist/history?until=2000-01-01&interval=minute');
is_deeply($r->data->{dataPoints}, [], 'until in the past');
is($r->data->{period}{until}, '2000-01-01', 'until echoed');

my $first = $created[0];
$r = $t->get('/v1/usage/hist/history?interval=minute&since=' . iso_ms($first)
	. '&until=' . iso_ms($first));
# several events may share that millisecond: the bounds include them all
is_deeply($r->data->{dataPoints}, buckets(60000, grep { $_ == $first } @created),
	'inclusive bounds');

$r = $t->get('/v1/usage/%20hist%20/history');
is($r->data->{entityId}, 'hist', 'entity trimmed');
is(scalar @{ $r->data->{dataPoints} }, scalar @{ buckets(3600000, @created) },
	'trimmed entity found');

for my $bad ('week', 'minutes', 'Hour', 'DAY', '', 'second', 'hour%20') {
	$r = $t->get("/v1/usage/hist/history?interval=$bad",
		headers => ['X-Trace-Id' => 'hst']);
	is($r->status, 400, "interval=$bad: 400") or diag $r->describe;
	is($r->err->{code}, 'VALIDATION_ERROR', "interval=$bad: code");
	is($r->err->{message}, 'interval must be minute, hour, or day',
		"interval=$bad: message");
	is($r->err->{traceId}, 'hst', "interval=$bad: traceId");
}

$r = $t->get('/v1/usage/hist/history?interval=year&since=bad');
is($r->status, 400, 'interval and since invalid');
like($r->err->{message} // '', qr/since must be a valid ISO8601 date/,
	'since message');
like($r->err->{message} // '', qr/interval must be minute, hour, or day/,
	'interval message');

$r = $t->get('/v1/usage/hist/history?until=nope');
is($r->err->{message}, 'until must be a valid ISO8601 date', 'until message');

$r = $t->get('/v1/usage/' . 'x' x 256 . '/history');
is($r->status, 400, 'entity too long');
is($r->err->{message}, 'entityId must be 255 characters or less',
	'entity too long: message');

$t->done_testing();
