#!/usr/bin/perl

# GET /v1/usage/{entityId}: totals by event type, unknown entity (200, 0, {}),
# the entity segment percent-decoded and trimmed (%2F, UTF-8, invalid
# encodings, empty, 255/256 code points), since/until in every ISO form of
# API.md (year, month, date, date-time with Z, ms and offsets, no zone),
# inclusive bounds, date = UTC midnight, invalid dates, the period echo.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf iso_ms parse_iso pct $ISO_RE);
use Time::HiRes qw(sleep time);

my $t = Test::Usage->new();
$t->write_config(api_conf())->run();

my @alpha;
for my $type (qw(click click view)) {
	push @alpha, $t->post_event('alpha', $type)->data->{createdAt};
	sleep 0.003;
}
$t->post_event('beta', 'click');
$t->post_event('a/b c', 'x');
$t->post_event("\x{fc}ber", 'x');
$t->post_event("\x{20ac}" x 255, 'x');
$t->post_event('%41', 'literal');
$t->post_event($_, 'reserved') for 'a+b', 'x&y=z', 'q?r', 'h#i';

my $start = $t->get('/v1/usage/stats')->data->{startTime};
like($start // '', $ISO_RE, 'startTime');

sub summary {
	my ($path, %o) = @_;
	return $t->get("/v1/usage/$path", %o);
}

# "2026-11-21T09:19:12.254+05:00" for epoch ms at an offset in minutes
sub at_offset {
	my ($ms, $min, $frac) = @_;
	my $l = $ms + $min * 60000;
	my @t = gmtime(int($l / 1000));
	my $s = sprintf('%04d-%02d-%02dT%02d:%02d:%02d', $t[5] + 1900, $t[4] + 1,
		$t[3], $t[2], $t[1], $t[0]);
	$s .= sprintf('.%03d', $l % 1000) if $frac // 1;
	my $a = abs $min;
	$s .= sprintf('%s%02d:%02d', $min < 0 ? '-' : '+', $a / 60, $a % 60);
	return $s;
}

###############################################################################

my $r = summary('alpha');
is($r->status, 200, 'summary');
is($r->json->{success}, JSON::PP::true, 'envelope');
my $d = $r->data;
is($d->{entityId}, 'alpha', 'entityId');
is($d->{totalEvents}, 3, 'totalEvents');
is_deeply($d->{byEventType}, { click => 2, view => 1 }, 'byEventType');
is($d->{period}{since}, $start, 'default since is the start time');
like($d->{period}{until} // '', $ISO_RE, 'default until is ISO');
my $until = parse_iso($d->{period}{until}) // 0;
ok(abs($until - time() * 1000) < 5000, 'default until is now');

$r = summary('nobody');
is($r->status, 200, 'unknown entity is 200');
is($r->data->{totalEvents}, 0, 'unknown entity: 0');
is_deeply($r->data->{byEventType}, {}, 'unknown entity: {}');
like($r->body, qr/"byEventType":\{\}/, 'byEventType rendered as {}');
is($r->data->{entityId}, 'nobody', 'unknown entity echoed');

###############################################################################
# the entity segment

$r = summary('a%2Fb%20c');
is($r->data->{totalEvents}, 1, '%2F and %20 decoded');
is($r->data->{entityId}, 'a/b c', 'decoded entityId echoed');
is(summary('a%2fb%20c')->data->{totalEvents}, 1, 'lower-case hex');
is(summary(pct("\x{fc}ber"))->data->{totalEvents}, 1, 'UTF-8 entity');
is(summary(pct("\x{fc}ber"))->data->{entityId}, "\x{fc}ber",
	'UTF-8 entity echoed');
is(summary('%20%20alpha%09')->data->{totalEvents}, 3, 'entity trimmed');
is(summary('%20alpha%20')->data->{entityId}, 'alpha', 'trimmed echoed');
is(summary('%2541')->data->{totalEvents}, 1, 'decoded once only');
is(summary('%61lpha')->data->{totalEvents}, 3, 'percent-encoded letter');
is(summary('beta?x=1')->data->{totalEvents}, 1, 'query not in the entity');

is(summary('a+b')->data->{entityId}, 'a+b', '+ in the path is not a space');
is(summary('a+b')->data->{totalEvents}, 1, '+ in the path found');
is(summary('x&y=z')->data->{totalEvents}, 1, '& and = in the path');
is(summary('q%3Fr')->data->{totalEvents}, 1, '%3F in the path');
is(summary('h%23i')->data->{totalEvents}, 1, '%23 in the path');

my $long = pct("\x{20ac}" x 255);
is(summary($long)->status, 200, '255 three-byte characters');
is(summary($long)->data->{totalEvents}, 1, '255 three-byte characters found');

sub bad_entity {
	my ($path, $message, $name) = @_;
	my $r = summary($path, headers => ['X-Trace-Id' => 'ent']);
	is($r->status, 400, "$name: 400") or diag $r->describe;
	is($r->err->{code}, 'VALIDATION_ERROR', "$name: code");
	is($r->err->{message}, $message, "$name: message") if defined $message;
	is($r->err->{traceId}, 'ent', "$name: traceId");
}

bad_entity(pct("\x{20ac}" x 256), 'entityId must be 255 characters or less',
	'256 three-byte characters');
bad_entity('a' x 256, 'entityId must be 255 characters or less',
	'256 characters');
bad_entity('%20', 'entityId is required', 'space only');
bad_entity('%20%09%20/history', 'entityId is required',
	'space only (history)');

# nginx itself refuses a URI with a broken %-escape before any location is
# chosen; it is still an error of the API server: JSON, not an HTML page
for my $p ('%zz', 'abc%', 'abc%4') {
	my $r = summary($p, headers => ['X-Trace-Id' => 'pct']);
	is($r->status, 400, "invalid percent-encoding '$p': 400");
	like($r->err->{code} // '', qr/^(?:VALIDATION_ERROR|BAD_REQUEST)$/,
		"'$p': JSON error") or diag $r->describe;
	# the request line failed: the headers were never read
	is($r->err->{traceId}, $r->trace_id, "'$p': traceId");
}
bad_entity('%ff', undef, 'invalid UTF-8');
bad_entity('%C3%28', undef, 'invalid UTF-8 sequence');

###############################################################################
# since / until

my ($y, $m, $dd) = (gmtime($alpha[0] / 1000))[5, 4, 3];
my $year = sprintf '%04d', $y + 1900;
my $month = sprintf '%s-%02d', $year, $m + 1;
my $day = sprintf '%s-%02d', $month, $dd;
my $first = $alpha[0];
my $last = $alpha[-1];

sub count {
	my ($q, $name, $want, $entity) = @_;
	my $r = summary(($entity // 'alpha') . "?$q");
	is($r->status, 200, "$name: 200") or diag $r->describe;
	is($r->data->{totalEvents}, $want, "$name: $want events");
	return $r;
}

count("since=$year", 'since year', 3);
count("since=$month", 'since month', 3);
count("since=$day", 'since date', 3);
count('since=' . ($year + 1), 'since next year', 0);
count("until=$year", 'until year (Jan 1 midnight)', 0);
count("until=$month", 'until month (1st midnight)', 0);
count("until=$day", 'until date (UTC midnight)', 0);
count('until=' . ($year + 1), 'until next year', 3);
count('since=2000&until=2100', 'wide range', 3);
count('since=2024-02-29', 'a leap day', 3);
count('until=2024-02-29T23:59:59.999Z', 'until a leap day', 0);

my $iso = iso_ms($first - 60000);
$iso =~ s/\.\d{3}Z$/Z/;
count("since=$iso", 'since date-time Z', 3);
(my $nozone = $iso) =~ s/Z$//;
count("since=$nozone", 'since date-time without zone', 3);
count('since=' . iso_ms($last + 60000), 'since after all (ms Z)', 0);
count('since=' . pct(at_offset($first - 60000, 300)), 'since +05:00', 3);
count('since=' . pct(at_offset($last + 60000, 300)), 'since +05:00 after', 0);
count('until=' . pct(at_offset($first - 60000, -210)), 'until -03:30 before',
	0);
count('until=' . pct(at_offset($last + 60000, -210)), 'until -03:30 after', 3);
count('until=' . pct(at_offset($last + 60000, 0, 0)), 'until +00:00', 3);

my $r2 = count('since=' . iso_ms($first) . '&until=' . iso_ms($first),
	'since = until = createdAt (inclusive)', 1);
is_deeply($r2->data->{byEventType}, { click => 1 }, 'inclusive bounds type');
count('since=' . iso_ms($first + 1) . '&until=' . iso_ms($alpha[1]),
	'since one ms after the first', 1);
count('since=' . iso_ms($first) . '&until=' . iso_ms($alpha[1] - 1),
	'until one ms before the second', 1);
count("since=2100&until=2000", 'since after until', 0);

# the period echoes the strings as given
my $q = at_offset($first - 60000, 300);
$r = count('since=' . pct($q) . "&until=$year", 'echo', 0);
is($r->data->{period}{since}, $q, 'period.since echoed as given');
is($r->data->{period}{until}, $year, 'period.until echoed as given');
$r = count("since=$day", 'echo since only', 3);
is($r->data->{period}{since}, $day, 'period.since date');
like($r->data->{period}{until} // '', $ISO_RE, 'period.until defaults to now');
$r = count("until=$day", 'echo until only', 0);
is($r->data->{period}{since}, $start, 'period.since defaults to start');

my $SINCE = 'since must be a valid ISO8601 date';
my $UNTIL = 'until must be a valid ISO8601 date';

for my $bad ('yesterday', 'abc', '2026-13-01', '2026-00-10', '2026-11-00',
	'2026-11-32', '2026-11-21T25:00:00Z', '2026-11-21T04:61:00Z',
	'2026-1-5', '21-11-2026', '2026-W47', '2026-W47-6', '2026-325',
	'2026-11-21T04:00:00X', '2026-11-21Z04:00', '1700000000000', 'now',
	'2026-02-29', '2026-02-30', '2026-04-31')
{
	for my $which ('since', 'until') {
		my $r = summary('alpha?' . $which . '=' . pct($bad),
			headers => ['X-Trace-Id' => 'iso']);
		is($r->status, 400, "$which=$bad: 400") or diag $r->describe;
		is($r->err->{code}, 'VALIDATION_ERROR', "$which=$bad: code");
		is($r->err->{message}, $which eq 'since' ? $SINCE : $UNTIL,
			"$which=$bad: message");
		is($r->err->{traceId}, 'iso', "$which=$bad: traceId");
	}
}

$r = summary('alpha?since=x&until=y');
is($r->err->{message}, "$SINCE, $UNTIL", 'both dates invalid');

###############################################################################
# stats is reserved

$r = $t->get('/v1/usage/stats');
ok(exists $r->data->{totalEvents} && !exists $r->data->{entityId},
	'/v1/usage/stats is never an entity');
$t->post_event('stats', 'x');
$r = $t->get('/v1/usage/stats');
ok(!exists $r->data->{byEventType}, 'still stats with an entity "stats"');

# type names that need a JSON escape, beside plain ones, in both maps and
# in stats (answers copy the plain ones as they are)
my %esc = ('q"t' => 1.5, 'b\\s' => 2, 'é' => 1, 'plain' => 0.25);
for my $type (sort keys %esc) {
	is($t->post_json('/v1/events', { entityId => 'esc', eventType => $type,
		value => $esc{$type} })->status, 201, "type $type stored");
}
$r = $t->get('/v1/usage/esc');
is_deeply($r->data->{byEventType}, { map { $_ => 1 } keys %esc },
	'escaped and plain names: byEventType');
is_deeply($r->data->{valueByEventType}, \%esc,
	'escaped and plain names: valueByEventType');
like($r->body, qr/"byEventType":\{"b\\\\s":1,"plain":1,"q\\"t":1,"\x{c3}\x{a9}":1\}/,
	'written as JSON.stringify would, in the order first seen');
my $types = $t->get('/v1/usage/stats')->data->{eventTypes};
is($types->{$_}, 1, "stats: $_") for sort keys %esc;

$t->done_testing();
