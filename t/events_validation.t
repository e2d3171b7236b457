#!/usr/bin/perl

# POST /v1/events validation: every message of API.md parts 1 and 2, in
# order and joined by ", "; lengths in code points (255/256, 100/101, 3- and
# 4-byte characters); whitespace-only ids; control characters; malformed JSON,
# non-object bodies, invalid UTF-8, an empty body; the default metadata size
# and depth limits.  Nothing invalid is stored.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf json_encode $UUID4_RE);

my $t = Test::Usage->new();
$t->write_config(api_conf())->run();

my $CT = 'application/json; charset=utf-8';

# POST a body (a structure or raw bytes), expect 400 with $message
sub invalid {
	my ($body, $message, $name) = @_;
	my $r = $t->post_json('/v1/events', $body,
		headers => ['X-Trace-Id' => 'val-trace']);
	is($r->status, 400, "$name: 400") or diag $r->describe;
	is($r->err->{code}, 'VALIDATION_ERROR', "$name: code");
	if (ref $message) {
		like($r->err->{message} // '', $message, "$name: message");
	} else {
		is($r->err->{message}, $message, "$name: message");
	}
	is($r->err->{traceId}, 'val-trace', "$name: traceId");
	is($r->header('Content-Type'), $CT, "$name: JSON");
	ok(!exists $r->json->{success}, "$name: no success field")
		if ref $r->json eq 'HASH';
}

sub valid {
	my ($body, $name) = @_;
	my $r = $t->post_json('/v1/events', $body);
	is($r->status, 201, "$name: 201") or diag $r->describe;
	return $r;
}

my $E_REQ = 'entityId is required';
my $E_STR = 'entityId must be a string';
my $T_REQ = 'eventType is required';
my $T_STR = 'eventType must be a string';

###############################################################################
# required and type rules

invalid({}, "$E_REQ, $E_STR, $T_REQ, $T_STR", 'empty object');
invalid({ eventType => 'x' }, "$E_REQ, $E_STR", 'entityId missing');
invalid({ entityId => 'x' }, "$T_REQ, $T_STR", 'eventType missing');
invalid({ entityId => undef, eventType => 'x' }, "$E_REQ, $E_STR",
	'entityId null');
invalid({ entityId => 'x', eventType => undef }, "$T_REQ, $T_STR",
	'eventType null');
invalid({ entityId => '', eventType => 'x' }, $E_REQ, 'entityId empty');
invalid({ entityId => 'x', eventType => '' }, $T_REQ, 'eventType empty');
invalid({ entityId => '   ', eventType => 'x' }, $E_REQ,
	'entityId spaces only');
invalid({ entityId => " \t\n\r\x0b\x0c", eventType => 'x' }, $E_REQ,
	'entityId ascii whitespace only');
invalid({ entityId => "\x{a0}\x{3000}\x{2003}\x{feff}", eventType => 'x' },
	$E_REQ, 'entityId unicode whitespace only');
invalid({ entityId => 'x', eventType => "\t " }, $T_REQ,
	'eventType whitespace only');

for my $v ([5, 'number'], [1.5, 'float'], [JSON::PP::true, 'true'],
	[JSON::PP::false, 'false'], [[], 'array'], [['a'], 'array of string'],
	[{}, 'object'])
{
	invalid({ entityId => $v->[0], eventType => 'x' }, $E_STR,
		"entityId $v->[1]");
	invalid({ entityId => 'x', eventType => $v->[0] }, $T_STR,
		"eventType $v->[1]");
}

invalid({ entityId => 5, eventType => '', metadata => [] },
	"$E_STR, $T_REQ, metadata must be an object", 'all rules in order');
invalid({ metadata => 'x' },
	"$E_REQ, $E_STR, $T_REQ, $T_STR, metadata must be an object",
	'everything wrong');

###############################################################################
# metadata

for my $v ([undef, 'null'], [[], 'array'], ['str', 'string'], [0, 'number'],
	[JSON::PP::true, 'boolean'], [[{}], 'array of object'])
{
	invalid({ entityId => 'x', eventType => 'y', metadata => $v->[0] },
		'metadata must be an object', "metadata $v->[1]");
}

my $r = valid({ entityId => 'x', eventType => 'y', metadata => {} },
	'metadata {}');

# default limits: 8192 bytes serialized, depth 32
invalid({ entityId => 'x', eventType => 'y',
	metadata => { a => 'v' x 9000 } },
	'metadata must be 8192 bytes or less', 'metadata over 8192 bytes');
valid({ entityId => 'x', eventType => 'y', metadata => { a => 'v' x 8000 } },
	'metadata of 8000 bytes');
invalid({ entityId => '', eventType => 'y',
	metadata => { a => 'v' x 9000 } },
	"$E_REQ, metadata must be 8192 bytes or less", 'size with other errors');

my $deep = 1;
$deep = { d => $deep } for 1 .. 40;
invalid({ entityId => 'x', eventType => 'y', metadata => $deep },
	'metadata is nested too deeply', 'metadata nested 40 deep');

my $ok = 1;
$ok = { d => $ok } for 1 .. 20;
valid({ entityId => 'x', eventType => 'y', metadata => $ok },
	'metadata nested 20 deep');

my $arrays = '[' x 25 . ']' x 25;
valid(qq({"entityId":"x","eventType":"y","metadata":{"a":$arrays}}),
	'metadata with 25 nested arrays');

###############################################################################
# lengths in code points

valid({ entityId => 'a' x 255, eventType => 'y' }, 'entityId 255 chars');
invalid({ entityId => 'a' x 256, eventType => 'y' },
	'entityId must be 255 characters or less', 'entityId 256 chars');
valid({ entityId => "\x{20ac}" x 255, eventType => 'y' },
	'entityId 255 three-byte chars');
invalid({ entityId => "\x{20ac}" x 256, eventType => 'y' },
	'entityId must be 255 characters or less',
	'entityId 256 three-byte chars');
valid({ entityId => "\x{1F600}" x 255, eventType => 'y' },
	'entityId 255 four-byte chars');
invalid({ entityId => "\x{1F600}" x 256, eventType => 'y' },
	'entityId must be 255 characters or less',
	'entityId 256 four-byte chars');
valid({ entityId => '  ' . 'a' x 255 . "\t", eventType => 'y' },
	'entityId length counted after trimming');

valid({ entityId => 'x', eventType => 'b' x 100 }, 'eventType 100 chars');
invalid({ entityId => 'x', eventType => 'b' x 101 },
	'eventType must be 100 characters or less', 'eventType 101 chars');
valid({ entityId => 'x', eventType => "\x{e9}" x 100 },
	'eventType 100 two-byte chars');
invalid({ entityId => 'x', eventType => "\x{65e5}" x 101 },
	'eventType must be 100 characters or less',
	'eventType 101 three-byte chars');
invalid({ entityId => 'a' x 256, eventType => 'b' x 101 },
	'entityId must be 255 characters or less, '
	. 'eventType must be 100 characters or less', 'both too long');

###############################################################################
# control characters

for my $c ("\x00", "\x01", "\x1f", "\x7f", "\n") {
	my $n = sprintf 'U+%04X', ord $c;
	invalid({ entityId => "a${c}b", eventType => 'y' },
		'entityId must not contain control characters', "entityId $n");
	invalid({ entityId => 'x', eventType => "a${c}b" },
		'eventType must not contain control characters', "eventType $n");
}

invalid({ entityId => "a\x01b", eventType => "c\x02d" },
	'entityId must not contain control characters, '
	. 'eventType must not contain control characters', 'both with controls');

$r = valid({ entityId => "\nabc\n", eventType => "\tdef\r" },
	'controls that trimming removes');
is($r->data->{entityId}, 'abc', 'trimmed entityId');

valid({ entityId => "a\x{80}b\x{9f}", eventType => 'y' },
	'C1 controls are not rejected');

###############################################################################
# malformed, non-object, invalid UTF-8, empty

for my $b ('{"entityId":', '{entityId:"x"}', "{'a':1}", '{"a":1,}',
	'{"a":1} x', '', ' ', 'nul', '{"a":"\x"}')
{
	invalid($b, length($b) && $b =~ /\S/ ? qr/^Malformed JSON/
		: qr/^(?:Malformed JSON|entityId is required)/, "malformed '$b'");
}

for my $b ('[]', '[{"entityId":"x","eventType":"y"}]', '"str"', '5', 'true',
	'null')
{
	invalid($b, 'Request body must be a JSON object', "non-object '$b'");
}

for my $b (qq({"entityId":"a\xffb","eventType":"y"}),
	qq({"entityId":"a\xc3\x28","eventType":"y"}),
	qq({"entityId":"x","eventType":"y","metadata":{"k":"\xed\xa0\x80"}}),
	qq({"entityId":"\xc0\xaf","eventType":"y"}))
{
	(my $n = $b) =~ s/([^\x20-\x7e])/sprintf '\\x%02x', ord $1/ge;
	invalid($b, 'Request body must be valid UTF-8', "invalid UTF-8 $n");
}

# a body of Content-Length: 0 is {}
$r = $t->request('POST', '/v1/events', body => '',
	headers => ['Content-Type' => 'application/json']);
is($r->status, 400, 'empty body');
is($r->err->{message}, "$E_REQ, $E_STR, $T_REQ, $T_STR",
	'empty body is {}');

# deep nesting in the parser itself is refused, not a crash
invalid('{"entityId":"x","eventType":"y","metadata":' . '[' x 5000
	. ']' x 5000 . '}', qr/^Request body is nested too deeply$/,
	'5000 nested arrays');

###############################################################################
# nothing invalid was stored

$r = $t->get('/v1/events?limit=1000');
my $stored = $r->data->{pagination}{total};
is($stored, 12, 'only the valid events are stored');

$t->done_testing();
