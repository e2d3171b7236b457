#!/usr/bin/perl

# GET /v1/events: newest first, entityId/eventType filters (exact, empty means
# none), pagination (total after filtering, limit/offset as numbers, hasMore),
# strict decimal limit/offset ("01" is 1; +1, 1.5, " 1", 1e2, empty are not),
# both errors joined, query decoding (+, %XX), first occurrence wins,
# case-sensitive names.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf pct);
use Time::HiRes qw(sleep);

my $t = Test::Usage->new();
$t->write_config(api_conf())->run();

# 12 events, distinct createdAt (a few ms apart)
my @plan = (
	[qw(alice click)], [qw(bob click)], [qw(alice view)], [qw(carol buy)],
	[qw(alice click)], [qw(bob view)], ['user 1', 'click'], ['a/b', 'view'],
	[qw(alice buy)], [qw(bob click)], [qw(alice click)], ["\x{fc}ber", 'x'],
);
my @ids;
for my $p (@plan) {
	my $r = $t->post_event(@$p);
	push @ids, $r->data->{id};
	sleep 0.003;
}
is(scalar(grep { defined } @ids), 12, 'seeded 12 events');
my @newest = reverse @ids;

sub list {
	my ($q) = @_;
	my $r = $t->get('/v1/events' . (defined $q ? "?$q" : ''));
	return $r;
}

sub ids_of { [map { $_->{id} } @{ $_[0]->data->{events} || [] }] }

###############################################################################
# defaults and ordering

my $r = list();
is($r->status, 200, 'list');
is_deeply(ids_of($r), \@newest, 'all events, newest first');
is_deeply($r->data->{pagination},
	{ total => 12, limit => 100, offset => 0, hasMore => JSON::PP::false },
	'default pagination');
like($r->body, qr/"limit":100[,}]/, 'limit is a number');
like($r->body, qr/"offset":0[,}]/, 'offset is a number');
like($r->body, qr/"total":12[,}]/, 'total is a number');
like($r->body, qr/"hasMore":false/, 'hasMore is a boolean');

my @created = map { $_->{createdAt} } @{ $r->data->{events} };
is_deeply(\@created, [sort { $b <=> $a } @created], 'createdAt descending');

###############################################################################
# filters

$r = list('entityId=alice');
is_deeply(ids_of($r), [@newest[1, 3, 7, 9, 11]], 'entityId filter');
is($r->data->{pagination}{total}, 5, 'total counted after filtering');

$r = list('eventType=click');
is_deeply(ids_of($r), [@newest[1, 2, 5, 7, 10, 11]], 'eventType filter');

$r = list('entityId=alice&eventType=click');
is_deeply(ids_of($r), [@newest[1, 7, 11]], 'both filters');

$r = list('entityId=Alice');
is($r->data->{pagination}{total}, 0, 'entityId match is exact (case)');
$r = list('entityId=ali');
is($r->data->{pagination}{total}, 0, 'entityId match is exact (prefix)');
$r = list('entityId=nobody');
is_deeply($r->data->{events}, [], 'unknown entity: no events');
is($r->data->{pagination}{hasMore}, JSON::PP::false, 'unknown entity: no more');

$r = list('entityId=&eventType=');
is($r->data->{pagination}{total}, 12, 'empty filters mean no filter');

$r = list('entityId=user+1');
is_deeply(ids_of($r), [$newest[5]], '+ decodes to a space');
$r = list('entityId=user%201');
is_deeply(ids_of($r), [$newest[5]], '%20 decodes to a space');
$r = list('entityId=a%2Fb');
is_deeply(ids_of($r), [$newest[4]], '%2F decodes to a slash');
$r = list('entityId=' . pct("\x{fc}ber"));
is_deeply(ids_of($r), [$newest[0]], 'UTF-8 percent-encoded entityId');

$r = list('entityId=bob&entityId=alice');
is($r->data->{pagination}{total}, 3, 'first occurrence wins');
$r = list('EntityId=bob');
is($r->data->{pagination}{total}, 12, 'parameter names are case-sensitive');

###############################################################################
# pagination

$r = list('limit=5');
is_deeply(ids_of($r), [@newest[0 .. 4]], 'limit=5');
is_deeply($r->data->{pagination},
	{ total => 12, limit => 5, offset => 0, hasMore => JSON::PP::true },
	'limit=5 pagination');

$r = list('limit=5&offset=5');
is_deeply(ids_of($r), [@newest[5 .. 9]], 'second page');
is($r->data->{pagination}{hasMore}, JSON::PP::true, 'second page hasMore');

$r = list('limit=5&offset=10');
is_deeply(ids_of($r), [@newest[10, 11]], 'last page');
is_deeply($r->data->{pagination},
	{ total => 12, limit => 5, offset => 10, hasMore => JSON::PP::false },
	'last page pagination');

$r = list('limit=4&offset=8');
is($r->data->{pagination}{hasMore}, JSON::PP::false,
	'offset+limit == total: no more');
$r = list('limit=4&offset=7');
is($r->data->{pagination}{hasMore}, JSON::PP::true,
	'offset+limit < total: more');

$r = list('offset=50');
is_deeply($r->data->{events}, [], 'offset past the end');
is($r->data->{pagination}{total}, 12, 'offset past the end: total');

$r = list('limit=2&entityId=alice&offset=1');
is_deeply(ids_of($r), [@newest[3, 7]], 'filter and page');
is($r->data->{pagination}{hasMore}, JSON::PP::true, 'filter and page: more');

$r = list('limit=1000');
is($r->status, 200, 'limit=1000');
is($r->data->{pagination}{limit}, 1000, 'limit=1000 echoed');
$r = list('limit=1');
is($r->data->{pagination}{limit}, 1, 'limit=1');
$r = list('limit=01');
is($r->status, 200, 'limit=01 is decimal 1');
is($r->data->{pagination}{limit}, 1, 'limit=01 -> 1');
like($r->body, qr/"limit":1[,}]/, 'limit=01 rendered as number 1');
$r = list('limit=%31%30');
is($r->status, 200, 'limit=%31%30 is decoded to 10');
is($r->data->{pagination}{limit}, 10, 'percent-encoded limit');
$r = list('offset=%31');
is($r->data->{pagination}{offset}, 1, 'percent-encoded offset');
$r = list('offset=00');
is($r->data->{pagination}{offset}, 0, 'offset=00 -> 0');
$r = list('limit=3&limit=7');
is($r->data->{pagination}{limit}, 3, 'first limit wins');
$r = list('LIMIT=3');
is($r->data->{pagination}{limit}, 100, 'LIMIT is not limit');

###############################################################################
# invalid limit and offset

my $LIM = 'limit must be between 1 and 1000';
my $OFF = 'offset must be 0 or greater';

sub bad {
	my ($q, $message) = @_;
	my $r = $t->get("/v1/events?$q", headers => ['X-Trace-Id' => 'lst']);
	is($r->status, 400, "$q: 400") or diag $r->describe;
	is($r->err->{code}, 'VALIDATION_ERROR', "$q: code");
	is($r->err->{message}, $message, "$q: message");
	is($r->err->{traceId}, 'lst', "$q: traceId");
}

bad("limit=$_", $LIM) for '0', '1001', '-1', 'abc', '%2B1', '+1', '1.5',
	'1.0', '%201', '1%20', '1e2', '0x10', '', '10abc', '99999999999999999999',
	'-0', '1,2';
bad("offset=$_", $OFF) for '-1', 'abc', '%2B0', '+0', '0.5', '%200', '',
	'1e1', '99999999999999999999999', '2x',
	'18446744073709551616', '18446744073709551626', '36893488147419103232';
bad('limit=0&offset=-1', "$LIM, $OFF");
bad('offset=-1&limit=0', "$LIM, $OFF");
bad('limit=abc&offset=abc&entityId=alice', "$LIM, $OFF");

$t->done_testing();
