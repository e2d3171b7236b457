#!/usr/bin/perl

# POST /v1/events/batch: {"events":[...]}, 1 to 1000 events, each by the
# rules of a single POST, stored all together or not at all.
#   - stored: 201, {"stored","duplicates","events":[{"id","createdAt",
#     "duplicate"}]} in the order sent; counted, listed, and ids known;
#   - duplicates (stored before, or twice in the batch): not stored again;
#     200 when every event was one;
#   - validation: every bad event named by index with the message a single
#     POST of it gets, and nothing of the batch stored; each malformed body
#     its own message;
#   - an entity bound reached mid-batch (429), a batch past half the raw
#     log or max_events (413): nothing stored, its ids not remembered;
#   - a scoped key and another entity in the batch: 403, nothing stored;
#   - GET: 405; another Content-Type: 415; over client_max_body_size: 413;
#   - one self-tracking event per call; concurrent batches on 2 workers
#     count exactly.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(json_encode iso_ms);
use Time::HiRes qw(sleep time);

my $t = Test::Usage->new();
$t->write_config(<<'EOF')->run();
http {
    usage_zone zone=usage:2m entity_types=3;

    map $http_x_api_key $api_entity {
        default     "";
        key-a       cust-a;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;
        client_max_body_size 64k;
        usage_track usage;
        usage_entity_scope $api_entity;

        location / {
            usage_api usage;
        }
    }
}
EOF

sub batch {
	my ($events, %o) = @_;
	my $path = delete $o{path} // '/v1/events/batch';
	my $body = ref $events ? json_encode({ events => $events }) : $events;
	return $t->post_json($path, $body, %o);
}

sub error_is {
	my ($r, $status, $code, $msg, $name) = @_;
	my $e = ($r->json // {})->{error} // {};
	is($r->status, $status, "$name: $status");
	is($e->{code}, $code, "$name: $code");
	if (ref $msg) {
		like($e->{message}, $msg, "$name: message");
	} else {
		is($e->{message}, $msg, "$name: message");
	}
	return $e;
}

sub total { $t->get('/v1/usage/stats')->data->{store}{recorded} }

sub summary { $t->get("/v1/usage/$_[0]")->data }

# --- stored ---------------------------------------------------------------

my $ts = iso_ms(int(time() * 1000) - 60_000);
my $r = batch([
	{ entityId => 'b1', eventType => 'call' },
	{ entityId => 'b1', eventType => 'tokens', value => 250, id => 'req-1',
	  metadata => { model => 'small' } },
	{ entityId => 'b2', eventType => 'call', timestamp => $ts },
]);
is($r->status, 201, 'a batch: 201');
my $d = $r->data;
is($d->{stored}, 3, 'stored 3');
is($d->{duplicates}, 0, 'no duplicate');
is(scalar @{ $d->{events} || [] }, 3, 'one answer per event');
like($d->{events}[0]{id}, qr/^[0-9a-f]{8}-[0-9a-f]{4}-4/, 'no client id: a uuid');
is($d->{events}[1]{id}, 'req-1', 'a client id: itself');
ok(!$d->{events}[$_]{duplicate}, "event $_: not a duplicate") for 0 .. 2;
ok($d->{events}[0]{createdAt} > 1.7e12, 'createdAt, in ms');
ok($d->{events}[2]{createdAt} >= $d->{events}[0]{createdAt},
	'createdAt in the order sent');

my $s = summary('b1');
is($s->{totalEvents}, 2, 'b1 counts its 2');
is($s->{totalValue}, 251, 'and their values');
is(summary('b2')->{totalEvents}, 1, 'b2 counts its one');
is($t->get('/v1/events?entityId=b2')->data->{events}[0]{timestamp}, $ts,
	'its timestamp kept');

my $l = $t->get('/v1/events?entityId=b1')->data->{events};
is_deeply([sort map { $_->{id} } @$l],
	[sort ($d->{events}[0]{id}, 'req-1')], 'listed with their ids');
my ($tok) = grep { $_->{id} eq 'req-1' } @$l;
is_deeply($tok->{metadata}, { model => 'small' }, 'metadata kept');

# --- duplicates --------------------------------------------------------------

$r = batch([
	{ entityId => 'b1', eventType => 'tokens', id => 'req-1', value => 9 },
	{ entityId => 'b1', eventType => 'tokens', id => 'req-2' },
	{ entityId => 'b1', eventType => 'tokens', id => 'req-2' },
]);
is($r->status, 201, 'a batch with duplicates: 201');
$d = $r->data;
is($d->{stored}, 1, 'one stored');
is($d->{duplicates}, 2, 'two duplicates: stored before, and twice in it');
ok($d->{events}[0]{duplicate} && !$d->{events}[1]{duplicate}
	&& $d->{events}[2]{duplicate}, 'each marked');
is($d->{events}[0]{createdAt}, $tok->{createdAt},
	"a duplicate answers the stored event's createdAt");
is(summary('b1')->{totalEvents}, 3, 'counted once each');
is(summary('b1')->{totalValue}, 252, 'the duplicate\'s value not added');

$r = batch([{ entityId => 'b1', eventType => 'tokens', id => 'req-2' }]);
is($r->status, 200, 'only duplicates: 200');
is($r->data->{stored}, 0, 'nothing stored');

# --- validation: all or nothing -----------------------------------------------

my $before = total();
$r = batch([
	{ entityId => 'v1', eventType => 'ok' },
	{ entityId => '  ', eventType => 7 },
	'not an event',
	{ entityId => 'v1', eventType => 'ok', value => 'x' },
	{ entityId => 'v1', eventType => 'ok', metadata => [1] },
]);
my $e = error_is($r, 400, 'VALIDATION_ERROR',
	'4 of 5 events are invalid (the first: index 1); nothing was stored',
	'bad events');
is_deeply($e->{details}, [
	{ index => 1, message => 'entityId is required, eventType must be a string' },
	{ index => 2, message => 'An event must be a JSON object' },
	{ index => 3, message => 'value must be a finite number' },
	{ index => 4, message => 'metadata must be an object' },
], 'every bad event by index, with the message of a single POST')
	or diag(explain($e->{details}));
like($e->{traceId}, qr/./, 'with the trace id');
for my $i (1, 3) {
	my $single = $t->post_json('/v1/events',
		[undef, { entityId => '  ', eventType => 7 }, undef,
		 { entityId => 'v1', eventType => 'ok', value => 'x' }]->[$i]);
	is($single->json->{error}{message}, $e->{details}[$i == 1 ? 0 : 2]{message},
		"index $i: the single POST's message");
}
is(summary('v1')->{totalEvents}, 0, 'nothing of the batch stored');

# the single-pass reader (objects only) and jansson (anything else) give
# the same answers
$r = batch([
	{ entityId => 'v1', eventType => 'ok' },
	{ entityId => '  ', eventType => 7 },
	{ entityId => 'v1', eventType => 'ok', value => 'x' },
]);
$e = error_is($r, 400, 'VALIDATION_ERROR',
	'2 of 3 events are invalid (the first: index 1); nothing was stored',
	'bad events, objects only');
is_deeply($e->{details}, [
	{ index => 1, message => 'entityId is required, eventType must be a string' },
	{ index => 2, message => 'value must be a finite number' },
], 'the same details');
is(summary('v1')->{totalEvents}, 0, 'nothing stored');

my $n_case = 0;
for my $case (
	[ "{ \"events\" :\n [ {\"entityId\" : \"ws\", \"eventType\":\"a\"} ,\n"
	  . "\t{\"eventType\":\"b\",\"entityId\":\"ws\",\"metadata\":{\"k\": [1, 2]}} ] }\n",
	  'whitespace everywhere' ],
	[ '{"events":[{"entityId":"ws","eventType":"a"},'
	  . '{"entity\u0049d":"ws","eventType":"b","metadata":{"k":[1,2]}}]}',
	  'an escaped key (jansson)' ],
	[ '{"note":1,"events":[{"entityId":"ws","eventType":"a"},'
	  . '{"entityId":"ws","eventType":"b","metadata":{"k":[1,2]}}]}',
	  'another key first (jansson)' ],
) {
	my ($body, $name, $ws) = (@$case, "ws" . $n_case++);
	$body =~ s/"ws"/"$ws"/g;
	$r = batch($body);
	is($r->status, 201, "$name: 201");
	is($r->data->{stored}, 2, "$name: 2 stored");
	is(summary($ws)->{totalEvents}, 2, "$name: counted");
	my $ev = $t->get("/v1/events?entityId=$ws")->data->{events};
	is_deeply([map { [$_->{eventType}, $_->{metadata}] } @$ev],
		[['a', {}], ['b', { k => [1, 2] }]],
		"$name: listed, metadata kept (one millisecond: in the order sent)");
}

my $big = { entityId => 'v2', eventType => 'ok', metadata => { x => 'y' x 20000 } };
$r = batch([{ entityId => 'v2', eventType => 'ok' }, $big]);
$e = error_is($r, 400, 'VALIDATION_ERROR', qr/^1 of 2 events are invalid/,
	'metadata too large in one');
like($e->{details}[0]{message}, qr/^metadata must be \d+ bytes or less$/,
	'named with its limit');
is(summary('v2')->{totalEvents}, 0, 'the valid one not stored');

my @bodies = (
	[ '', 'Request body must be a JSON object with an "events" array', 'empty body' ],
	[ '{"events":[', qr/^Malformed JSON: .* at line 1 column \d+$/, 'not JSON' ],
	[ '[{"entityId":"a","eventType":"b"}]',
	  'Request body must be a JSON object with an "events" array', 'an array' ],
	[ '{"event":[]}',
	  'Request body must be a JSON object with an "events" array', 'no events' ],
	[ '{"events":{"entityId":"a"}}',
	  'Request body must be a JSON object with an "events" array',
	  'events not an array' ],
	[ '{"events":[]}', 'events must hold 1 to 1000 events, not 0',
	  'no event' ],
	[ json_encode({ events => [ map { {} } 1 .. 1001 ] }),
	  'events must hold 1 to 1000 events, not 1001', '1001 events' ],
	[ "{\"events\":[{\"entityId\":\"\xff\",\"eventType\":\"b\"}]}",
	  'Request body must be valid UTF-8', 'invalid UTF-8' ],
);
for my $b (@bodies) {
	my ($body, $msg, $name) = @$b;
	error_is(batch($body), 400, 'VALIDATION_ERROR', $msg, $name);
}

# 1000 events: accepted
$r = batch([ map { { entityId => 'many', eventType => 'e' . ($_ % 3) } } 1 .. 1000 ]);
is($r->status, 201, '1000 events: 201');
is($r->data->{stored}, 1000, 'all stored');
is(summary('many')->{totalEvents}, 1000, 'all counted');

# --- refused while storing: nothing stored ------------------------------------

$r = batch([
	{ entityId => 'lim', eventType => 't1', id => 'l1' },
	{ entityId => 'lim', eventType => 't2', id => 'l2' },
	{ entityId => 'lim', eventType => 't3', id => 'l3' },
	{ entityId => 'lim', eventType => 't4', id => 'l4' },
]);
error_is($r, 429, 'ENTITY_LIMIT',
	'Nothing of the batch was stored: event 3: This entity already has 3 '
	. 'event types, the most one entity may have', 'an entity bound');
is(summary('lim')->{totalEvents}, 0, 'the 3 stored first taken back');
is(scalar @{ $t->get('/v1/events?entityId=lim')->data->{events} }, 0,
	'none listed');
$r = batch([{ entityId => 'lim', eventType => 't1', id => 'l1' }]);
is($r->status, 201, 'their ids are not remembered: stored now');
is(summary('lim')->{totalEvents}, 1, 'counted once');

# a zone of max_events=10 takes batches of 5 at most
my $t2 = Test::Usage->new();
$t2->write_config(Test::Usage::api_conf(
	zone => 'usage_zone zone=usage:256k max_events=10;'))->run();
$r = $t2->post_json('/v1/events/batch', json_encode({ events =>
	[ map { { entityId => 'tb', eventType => 'e' } } 1 .. 6 ] }));
error_is($r, 413, 'PAYLOAD_TOO_LARGE',
	"The batch takes more than half of the usage store's raw event log: "
	. 'send fewer events at a time', 'more than max_events / 2');
is($t2->get('/v1/usage/stats')->data->{totalEvents}, 0, 'nothing stored');
$r = $t2->post_json('/v1/events/batch', json_encode({ events =>
	[ map { { entityId => 'tb', eventType => 'e' } } 1 .. 5 ] }));
is($r->status, 201, 'max_events / 2: stored');
$t2->finish();

# --- scope ----------------------------------------------------------------------

$r = batch([{ entityId => 'cust-a', eventType => 'x' },
	{ entityId => 'cust-b', eventType => 'x' }],
	headers => ['X-Api-Key' => 'key-a']);
error_is($r, 403, 'FORBIDDEN', qr/cust-a/, 'a scoped key, another entity');
is(summary('cust-a')->{totalEvents}, 0, 'nothing stored');
$r = batch([{ entityId => 'cust-a', eventType => 'x' }],
	headers => ['X-Api-Key' => 'key-a']);
is($r->status, 201, 'its own entity: stored');

# --- the request ----------------------------------------------------------------

$r = $t->get('/v1/events/batch');
error_is($r, 405, 'METHOD_NOT_ALLOWED',
	'Method GET is not allowed on /v1/events/batch; allowed: POST, OPTIONS',
	'GET');
is($r->header('Allow'), 'POST, OPTIONS', 'Allow');
$r = $t->request('POST', '/v1/events/batch', body => '{"events":[]}',
	headers => ['Content-Type' => 'text/plain']);
error_is($r, 415, 'UNSUPPORTED_MEDIA_TYPE',
	'Content-Type must be application/json', 'text/plain');
$r = batch(json_encode({ events => [ map { { entityId => 'x' x 200,
	eventType => 'y' x 90 } } 1 .. 300 ] }));
error_is($r, 413, 'PAYLOAD_TOO_LARGE',
	'Request body is larger than the limit of 65536 bytes',
	'over client_max_body_size');

# self-tracking: one api-self event for a batch call.  The log phase
# records an answer's event after the answer went out, and the next
# request may reach the other worker first: the calls before settle
# before each count
sleep 0.3;
my $self = summary('api-self')->{totalEvents};
batch([ map { { entityId => 'st', eventType => 'x' } } 1 .. 10 ]);
sleep 0.3;
is(summary('api-self')->{totalEvents}, $self + 2,
	'one api-self event for the batch (and one for the summary read)');

# --- concurrent batches on 2 workers ------------------------------------------

my $BATCHES = 40;
my @out = $t->parallel(4, sub {
	my ($c) = @_;
	my $ok = 0;
	for my $i (1 .. $BATCHES) {
		my $r = batch([ map { { entityId => "conc", eventType => "t",
			id => "c$c-$i-$_" } } 1 .. 25 ]);
		$ok += $r->data->{stored} if $r->status == 201;
		# and a retry of the same batch: all duplicates
		my $again = batch([ map { { entityId => "conc", eventType => "t",
			id => "c$c-$i-$_" } } 1 .. 25 ]);
		$ok -= 1000 unless $again->status == 200
			&& $again->data->{duplicates} == 25;
	}
	return $ok;
});
my $sum = 0;
$sum += $_ // 0 for @out;
is($sum, 4 * $BATCHES * 25, 'every batch stored, every retry a duplicate');
is(summary('conc')->{totalEvents}, 4 * $BATCHES * 25, 'counted exactly');

$t->done_testing();
