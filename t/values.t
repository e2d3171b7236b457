#!/usr/bin/perl

# Metered values: "value" defaults to 1 (and null is the default); integer,
# fractional, negative and zero values; sums exact for integers up to 2^53;
# numbers written as JavaScript's Number#toString would; totalValue and
# valueByEventType in the summary (also with since/until), value in each
# history point; "value must be a finite number" for anything not a number,
# in order with the other rules.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf iso_ms);
use Time::HiRes qw(sleep time);

my $t = Test::Usage->new();
$t->write_config(api_conf())->run();

sub post {
	my ($entity, $type, @value) = @_;
	my %ev = (entityId => $entity, eventType => $type);
	$ev{value} = $value[0] if @value;
	return $t->post_json('/v1/events', \%ev);
}

sub summary { $t->get("/v1/usage/$_[0]" . ($_[1] // ''))->data }

###############################################################################
# the default, and null

my $r = post('dflt', 'a');
is($r->status, 201, 'no value: 201');
is($r->data->{value}, 1, 'default value 1');
like($r->body, qr/"value":1,"timestamp":/, 'event JSON has "value":1');

$r = post('dflt', 'a', undef);
is($r->status, 201, 'value null: 201');
like($r->body, qr/"value":1,/, 'value null is the default 1');

my $u = summary('dflt');
is($u->{totalEvents}, 2, 'two events');
is($u->{totalValue}, 2, 'totalValue of defaults');
is_deeply($u->{valueByEventType}, { a => 2 }, 'valueByEventType');
is($u->{resolution}, 'exact', 'resolution exact');

# the value is listed with the event
my $ev = $t->get('/v1/events?entityId=dflt&limit=1')->data->{events}[0];
is($ev->{value}, 1, 'listed event has its value');

###############################################################################
# integer, fractional, negative, zero

my @cases = (
	[2, '2'], [2.5, '2.5'], [-3, '-3'], [0, '0'], [-0.25, '-0.25'],
	['1e3', '1000'], ['1.5E2', '150'], ['0.000001', '0.000001'],
	['1.5e-7', '1.5e-7'], ['123456789.125', '123456789.125'],
	['-0', '0'], ['100000000000000000000', '100000000000000000000'],
	['1e21', '1e+21'],
	# past 64 bits: still a JSON number
	['1000000000000000000000000000000', '1e+30'],
);

for my $c (@cases) {
	my ($in, $out) = @$c;
	my $r = $t->post_json('/v1/events',
		qq({"entityId":"num","eventType":"n","value":$in}));
	is($r->status, 201, "value $in: 201") or diag $r->describe;
	like($r->body, qr/"value":\Q$out\E,"timestamp"/, "value $in written $out");
}

# sums: event counts and value sums per type
post('mix', 'tokens', 100);
post('mix', 'tokens', 250.5);
post('mix', 'tokens', -50);
post('mix', 'bytes', 0.1);
post('mix', 'bytes', 0.2);
post('mix', 'calls');
post('mix', 'calls', undef);
post('mix', 'zero', 0);

$u = summary('mix');
is($u->{totalEvents}, 8, 'mix: totalEvents counts events, not values');
is_deeply($u->{byEventType}, { tokens => 3, bytes => 2, calls => 2,
	zero => 1 }, 'mix: byEventType');
my $mix = $t->get('/v1/usage/mix')->body;
like($mix, qr/"valueByEventType":\{"tokens":300.5,"bytes":0.30000000000000004,"calls":2,"zero":0\}/,
	'mix: valueByEventType, in byEventType order, as JavaScript writes them');
ok(abs($u->{totalValue} - 302.8) < 1e-9, 'mix: totalValue is 302.8');

# negative sums
post('neg', 'x', -1);
post('neg', 'x', -2.5);
$u = summary('neg');
is($u->{totalValue}, -3.5, 'negative sum');
is_deeply($u->{valueByEventType}, { x => -3.5 }, 'negative by type');

###############################################################################
# large integers are exact up to 2^53

post('big', 'b', 9007199254740000);
post('big', 'b', 991);
$r = $t->get('/v1/usage/big');
like($r->body, qr/"totalValue":9007199254740991,/,
	'2^53 - 1 as a sum, exact');
like($r->body, qr/"valueByEventType":\{"b":9007199254740991\}/,
	'and by type');

post('big2', 'b', 4503599627370496);
post('big2', 'b', 4503599627370496);
like($t->get('/v1/usage/big2')->body, qr/"totalValue":9007199254740992,/,
	'2^52 + 2^52 = 2^53, exact');

$r = post('big3', 'b', 9007199254740991);
like($r->body, qr/"value":9007199254740991,/, '2^53 - 1 echoed exactly');
like($t->get('/v1/usage/big3/history?interval=day')->body,
	qr/"count":1,"value":9007199254740991\}/, 'and in the history');

###############################################################################
# history: value per point

post('hist', 'a', 3);
post('hist', 'a', 4);
post('hist', 'b', 0.5);
for my $interval (qw(minute hour day)) {
	my $d = $t->get("/v1/usage/hist/history?interval=$interval")->data;
	my ($n, $v) = (0, 0);
	for my $p (@{ $d->{dataPoints} }) {
		$n += $p->{count};
		$v += $p->{value};
	}
	is($n, 3, "history $interval: counts");
	is($v, 7.5, "history $interval: values");
	ok(!grep({ !exists $_->{value} } @{ $d->{dataPoints} }),
		"history $interval: every point has a value");
	is($d->{resolution}, 'exact', "history $interval: resolution");
}

###############################################################################
# since/until cut the raw events exactly: values too

my @created;
for my $v (10, 20, 30) {
	my $r = post('cut', 't', $v);
	push @created, $r->data->{createdAt};
	sleep 0.005;
}
my $since = iso_ms($created[1]);
my $until = iso_ms($created[1]);
$u = summary('cut', "?since=$since");
is($u->{totalEvents}, 2, 'since: two events');
is($u->{totalValue}, 50, 'since: their values');
is($u->{resolution}, 'exact', 'since: exact');
$u = summary('cut', "?since=$since&until=$until");
is($u->{totalEvents}, 1, 'since = until: one event');
is($u->{totalValue}, 20, 'since = until: its value');
is_deeply($u->{valueByEventType}, { t => 20 }, 'since = until: by type');

# an unknown entity
$u = summary('nobody');
is($u->{totalValue}, 0, 'unknown entity: totalValue 0');
is_deeply($u->{valueByEventType}, {}, 'unknown entity: valueByEventType {}');
like($t->get('/v1/usage/nobody')->body,
	qr/"totalValue":0,"valueByEventType":\{\},"resolution":"exact"/,
	'unknown entity: JSON');

###############################################################################
# validation

my $V = 'value must be a finite number';

sub invalid {
	my ($body, $message, $name) = @_;
	my $r = $t->post_json('/v1/events', $body,
		headers => ['X-Trace-Id' => 'value-trace']);
	is($r->status, 400, "$name: 400") or diag $r->describe;
	is($r->err->{code}, 'VALIDATION_ERROR', "$name: code");
	is($r->err->{message}, $message, "$name: message");
	is($r->err->{traceId}, 'value-trace', "$name: traceId");
}

my $before = $t->get('/v1/usage/stats')->data->{totalEvents};

for my $v (['abc', '"abc"'], ['1', '"1"'], ['', '""'],
	[JSON::PP::true, 'true'], [JSON::PP::false, 'false'], [[], '[]'],
	[[1], '[1]'], [{}, '{}'], [{ v => 1 }, '{"v":1}'])
{
	invalid({ entityId => 'bad', eventType => 'x', value => $v->[0] }, $V,
		"value $v->[1]");
}

# JSON has no NaN or Infinity: malformed, not a value error
for my $v ('NaN', 'Infinity', '-Infinity') {
	my $r = $t->post_json('/v1/events',
		qq({"entityId":"bad","eventType":"x","value":$v}));
	is($r->status, 400, "value $v: 400");
	like($r->err->{message} // '', qr/^Malformed JSON/, "value $v: malformed");
}

# a number past the range of a double: refused either way (JSON.parse
# would read Infinity, which is not finite); a tiny one reads as 0
for my $v ('1e999', '-1e999') {
	my $r = $t->post_json('/v1/events',
		qq({"entityId":"bad","eventType":"x","value":$v}));
	is($r->status, 400, "value $v: 400");
	like($r->err->{message} // '',
		qr/^(?:Malformed JSON|value must be a finite number)/,
		"value $v: refused");
}

invalid({ entityId => 'bad', eventType => '', value => 'x' },
	"eventType is required, $V", 'eventType and value');
invalid({ entityId => 'bad', eventType => 'x', metadata => 1, id => 2,
	value => [] }, "metadata must be an object, id must be a string, $V",
	'metadata, id, value in order');
invalid({ entityId => 'bad', eventType => 'x', value => {},
	timestamp => 'soon' },
	"$V, timestamp must be a valid ISO8601 date", 'value before timestamp');

is($t->get('/v1/usage/stats')->data->{totalEvents}, $before,
	'nothing invalid stored');

$r = $t->post_json('/v1/events',
	'{"entityId":"tiny","eventType":"x","value":1e-999}');
is($r->status, 201, 'value 1e-999: 201');
like($r->body, qr/"value":0,/, 'value 1e-999 reads as 0');
is(summary('bad')->{totalEvents}, 0, 'nothing for the invalid entity');

$t->done_testing();
