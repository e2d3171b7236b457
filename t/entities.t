#!/usr/bin/perl

# GET /v1/entities: the entities ranked by totalEvents (or totalValue with
# sort=value), ties by entity id; since/until as a summary counts them;
# limit and cursor paging (all pages are the whole ranking, in order);
# every bad input a 400 with its message; a scoped key sees its own
# entity only; a ranking of more entities than one hold of the lock
# reads (1024) is whole and matches each entity's summary; HEAD and 405.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use MIME::Base64 qw(decode_base64 encode_base64);
use Test::More;
use Test::Usage qw(api_conf iso_ms);

my $t = Test::Usage->new();
$t->write_config(api_conf(
	zone => 'usage_zone zone=usage:32m;',
	http => <<'EOF',
    map $http_x_api_key $api_entity {
        default     "";
        key-a       ent-03;
    }
EOF
	server => 'usage_entity_scope $api_entity;'))->run();

sub batch {
	my (@events) = @_;
	my $r = $t->post_json('/v1/events/batch', { events => \@events });
	is($r->status, 201, 'batch stored') or diag($r->body);
}

# 12 entities: ent-NN has (NN * 5) % 13 + 1 events, each of value 13 - NN
my %count;
my %value;
for my $n (1 .. 12) {
	my $e = sprintf('ent-%02d', $n);
	my $k = ($n * 5) % 13 + 1;
	batch(map { { entityId => $e, eventType => "t" . ($_ % 3),
		value => 13 - $n } } 1 .. $k);
	$count{$e} = $k;
	$value{$e} = $k * (13 - $n);
}

my @by_events = sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count;
my @by_value = sort { $value{$b} <=> $value{$a} || $a cmp $b } keys %count;

sub ranked {
	my ($q) = @_;
	my $r = $t->get("/v1/entities$q");
	is($r->status, 200, "GET /v1/entities$q") or diag($r->body);
	return $r;
}

sub names { [map { $_->{entityId} } @{ $_[0]->data->{entities} }] }

###############################################################################
# the ranking

my $r = ranked('');
my $d = $r->data;
is_deeply(names($r), \@by_events, 'by events, ties by id');
is_deeply([map { $_->{totalEvents} } @{ $d->{entities} }],
	[map { $count{$_} } @by_events], 'totalEvents of each');
is_deeply([map { $_->{totalValue} } @{ $d->{entities} }],
	[map { $value{$_} } @by_events], 'totalValue of each');
like($d->{entities}[0]{lastEventAt}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
	'lastEventAt is ISO');
is($d->{sort}, 'events', 'sort echoed');
is_deeply($d->{period}, { since => undef, until => undef }, 'no period');
is($d->{entitiesRead}, 12, 'every entity read');
is_deeply($d->{pagination}, { limit => 100, nextCursor => undef,
	hasMore => JSON::PP::false }, 'one page');
like($r->body, qr/"totalEvents":\d+,"totalValue":\d+/, 'totals are numbers');

is_deeply(names(ranked('?sort=value')), \@by_value, 'by value');
is_deeply(names(ranked('?sort=events')), \@by_events, 'sort=events');

###############################################################################
# paging

for my $sort ('events', 'value') {
	my $want = $sort eq 'value' ? \@by_value : \@by_events;
	for my $limit (1, 2, 5, 12) {
		my (@got, $pages);
		my $c = '';
		while (1) {
			my $r = $t->get("/v1/entities?sort=$sort&limit=$limit"
				. ($c eq '' ? '' : "&cursor=$c"));
			last unless $r->status == 200;
			$pages++;
			push @got, @{ names($r) };
			my $p = $r->data->{pagination};
			is(!!$p->{hasMore}, defined $p->{nextCursor},
				'hasMore when a cursor') if $pages == 1;
			$c = $p->{nextCursor};
			last unless defined $c;
			last if $pages > 20;
		}
		is_deeply(\@got, $want, "sort=$sort limit=$limit: $pages pages, "
			. 'the whole ranking');
	}
}

###############################################################################
# since/until: events back-dated into two minutes

my $now = time();
my $m1 = iso_ms(($now - 600) * 1000 - ($now % 60) * 1000);
my $m2 = iso_ms(($now - 300) * 1000 - ($now % 60) * 1000);
batch(map { { entityId => 'span-a', eventType => 'x', timestamp => $m1 } }
	1 .. 3);
batch(map { { entityId => 'span-b', eventType => 'x', timestamp => $m2 } }
	1 .. 5);

my $since = iso_ms(($now - 450) * 1000);
$r = ranked("?since=$since&limit=1000");
my %got = map { $_->{entityId} => $_->{totalEvents} }
	@{ $r->data->{entities} };
ok(!exists $got{'span-a'} && $got{'span-b'} == 5, 'since cuts span-a out');
is($r->data->{period}{since}, $since, 'since echoed as given');

$r = ranked("?until=$since&limit=1000");
%got = map { $_->{entityId} => $_->{totalEvents} } @{ $r->data->{entities} };
is_deeply(\%got, { 'span-a' => 3 }, 'until keeps span-a alone');

###############################################################################
# bad input

sub bad {
	my ($q, $code, $msg, $what) = @_;
	my $r = $t->get("/v1/entities$q");
	is($r->status, 400, "$what: 400");
	is($r->err->{code}, $code, "$what: $code");
	is($r->err->{message}, $msg, "$what: message");
}

bad('?limit=0', 'VALIDATION_ERROR', 'limit must be between 1 and 1000',
	'limit 0');
bad('?limit=1001', 'VALIDATION_ERROR', 'limit must be between 1 and 1000',
	'limit 1001');
bad('?limit=x', 'VALIDATION_ERROR', 'limit must be between 1 and 1000',
	'limit x');
bad('?sort=count', 'VALIDATION_ERROR', 'sort must be events or value',
	'sort count');
bad('?sort=', 'VALIDATION_ERROR', 'sort must be events or value',
	'sort empty');
bad('?since=yesterday', 'VALIDATION_ERROR',
	'since must be a valid ISO8601 date', 'since');
bad('?until=2026-13', 'VALIDATION_ERROR',
	'until must be a valid ISO8601 date', 'until');
bad('?limit=0&sort=x&since=x&until=x', 'VALIDATION_ERROR',
	'limit must be between 1 and 1000, sort must be events or value, '
	. 'since must be a valid ISO8601 date, until must be a valid ISO8601 '
	. 'date', 'every error');

my $c = $t->get('/v1/entities?limit=2')->data->{pagination}{nextCursor};
ok(defined $c && $c =~ /^[A-Za-z0-9_-]+$/, 'a cursor, URL-safe');

bad("?cursor=$c&sort=value", 'INVALID_CURSOR',
	'cursor was issued for other filters', 'cursor of another sort');
bad("?cursor=$c&since=$since", 'INVALID_CURSOR',
	'cursor was issued for other filters', 'cursor without its since');
bad('?cursor=abc', 'INVALID_CURSOR', 'cursor is malformed', 'short');
bad("?cursor=$c=", 'INVALID_CURSOR', 'cursor is malformed', 'padded');
bad("?cursor=$c*", 'INVALID_CURSOR', 'cursor is malformed', 'not base64url');
bad('?cursor=' . ('A' x 3000), 'INVALID_CURSOR', 'cursor is malformed',
	'too long');

# a bit of the row flipped, the MAC kept: forged
(my $b64 = $c) =~ tr{-_}{+/};
my $raw = decode_base64($b64 . '=' x ((4 - length($b64) % 4) % 4));
substr($raw, 20, 1) = chr(ord(substr($raw, 20, 1)) ^ 1);
(my $forged = encode_base64($raw, '')) =~ tr{+/}{-_};
$forged =~ s/=+$//;
bad("?cursor=$forged", 'INVALID_CURSOR',
	'cursor was not issued by this service', 'forged');

# an events cursor is not an entities cursor
my $ec = $t->get('/v1/events?limit=1&cursor=')->data->{pagination}{nextCursor};
bad("?cursor=$ec", 'INVALID_CURSOR', 'cursor is malformed',
	"the events list's cursor");

###############################################################################
# scope, methods

$r = $t->get('/v1/entities', headers => { 'X-API-Key' => 'key-a' });
is($r->status, 200, 'scoped key: 200');
is_deeply(names($r), ['ent-03'], 'scoped key: its own entity only');
is($r->data->{entitiesRead}, 1, 'scoped key: one entity read');

$r = $t->head('/v1/entities');
is($r->status, 200, 'HEAD');
is($r->body, '', 'HEAD: no body');

$r = $t->request('POST', '/v1/entities', body => '{}',
	headers => { 'Content-Type' => 'application/json' });
is($r->status, 405, 'POST: 405');
like($r->header('allow') // '', qr/^GET, HEAD, OPTIONS$/, 'Allow');

###############################################################################
# more entities than one hold of the lock reads: 3000, and each one's total
# is its summary's

for my $b (0 .. 29) {
	batch(map { { entityId => sprintf('many-%04d', $b * 100 + $_),
		eventType => 'm', value => 1 } } 0 .. 99);
}
# some of them get more
batch(map { { entityId => sprintf('many-%04d', $_ * 37), eventType => 'm' } }
	0 .. 80);

my (@walk, $pages);
$c = '';
while (1) {
	my $r = $t->get('/v1/entities?limit=1000' . ($c eq '' ? '' : "&cursor=$c"));
	last unless $r->status == 200;
	$pages++;
	push @walk, @{ $r->data->{entities} };
	$c = $r->data->{pagination}{nextCursor};
	last unless defined $c && $pages < 10;
}
my $n = 12 + 2 + 3000;
is(scalar(@walk), $n, "all $n entities in $pages pages");
my %seen;
is(scalar(grep { $seen{$_->{entityId}}++ } @walk), 0, 'none twice');
my @order = map { [$_->{totalEvents}, $_->{entityId}] } @walk;
my @sorted = sort { $b->[0] <=> $a->[0] || $a->[1] cmp $b->[1] } @order;
is_deeply(\@order, \@sorted, 'ranked across the chunks');
my %walked = map { $_->{entityId} => $_->{totalEvents} } @walk;
my $wrong = 0;
for my $i (0, 1, 37, 74, 1000, 1024, 1025, 2047, 2999) {
	my $e = sprintf('many-%04d', $i);
	my $s = $t->get("/v1/usage/$e")->data->{totalEvents};
	$wrong++ unless ($walked{$e} // -1) == $s;
}
is($wrong, 0, 'each total is its summary');
is($t->get('/v1/entities?limit=1')->data->{entitiesRead}, $n,
	'entitiesRead counts every entity');

###############################################################################
# rankings while 2 writers add entities on both workers: every answer whole

my @out = $t->parallel(3, sub {
	my ($i) = @_;
	my $bad = 0;
	if ($i < 3) {
		for my $b (0 .. 19) {
			my $r = $t->post_json('/v1/events/batch', { events => [
				map { { entityId => "live-$i-$b-$_", eventType => 'l' } }
				0 .. 99] });
			$bad++ unless $r->status == 201;
		}
		return "writer $bad";
	}
	for (1 .. 15) {
		my $r = $t->get('/v1/entities?limit=1000&sort=value');
		my %s;
		$bad++ unless $r->status == 200
			&& !grep { $s{$_->{entityId}}++ } @{ $r->data->{entities} };
	}
	return "reader $bad";
}, timeout => 60);
is_deeply(\@out, ['writer 0', 'writer 0', 'reader 0'],
	'writers stored all, every ranking was whole and had no entity twice');
is($t->get('/v1/entities?limit=1')->data->{entitiesRead}, $n + 4000,
	'the new entities ranked');

$t->done_testing();
