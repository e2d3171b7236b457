#!/usr/bin/perl

# POST /v1/events: 201 and the stored event (id, entityId, eventType, metadata
# kept exactly with nested values and unicode, timestamp, createdAt), trimming
# (ASCII and Unicode spaces), unknown fields ignored, accepted and refused
# Content-Types (415), a chunked request body.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf json_encode iso_ms parse_iso $UUID4_RE $ISO_RE);
use Time::HiRes qw(time);

my $t = Test::Usage->new();
$t->write_config(api_conf())->run();

my $CT = 'application/json; charset=utf-8';

###############################################################################

my $meta = {
	nested => { a => [1, 2, { b => 'c' }], empty => {}, list => [] },
	unicode => "caf\x{e9} \x{20ac} \x{1F600} \x{65e5}\x{672c}",
	escapes => "quote\" backslash\\ newline\n tab\t",
	number => 42,
	negative => -7,
	float => 1.5,
	big => 12345678901,
	yes => JSON::PP::true,
	no => JSON::PP::false,
	nothing => undef,
};

my $before = int(time() * 1000);
my $r = $t->post_json('/v1/events', {
	entityId => 'user-1', eventType => 'api_call', metadata => $meta,
	unknownField => 'ignored', another => [1],
});
my $after = int(time() * 1000);

is($r->status, 201, 'created') or diag $r->describe;
is($r->header('Content-Type'), $CT, 'content type');
is($r->json->{success}, JSON::PP::true, 'success');
my $ev = $r->data;
like($ev->{id} // '', $UUID4_RE, 'id is a uuid v4');
is($ev->{entityId}, 'user-1', 'entityId');
is($ev->{eventType}, 'api_call', 'eventType');
is_deeply($ev->{metadata}, $meta, 'metadata kept exactly');
like($ev->{timestamp} // '', $ISO_RE, 'timestamp ISO with ms');
like($r->body, qr/"createdAt":\d+[,}]/, 'createdAt is an integer');
ok($ev->{createdAt} >= $before - 5 && $ev->{createdAt} <= $after + 5,
	'createdAt is now');
is($ev->{timestamp}, iso_ms($ev->{createdAt}), 'timestamp matches createdAt');
ok(!exists $ev->{unknownField} && !exists $ev->{another},
	'unknown fields ignored');
is_deeply([sort keys %$ev],
	[qw(createdAt entityId eventType id metadata timestamp value)],
	'event fields');
is($ev->{value}, 1, 'value defaults to 1');

# and the same event is listed
$r = $t->get('/v1/events?entityId=user-1');
my $listed = $r->data->{events}[0];
is_deeply($listed, $ev, 'listed event equals the created one');

# metadata defaults to {}
$r = $t->post_event('user-2', 'login');
is($r->status, 201, 'no metadata');
is_deeply($r->data->{metadata}, {}, 'metadata defaults to {}');
like($r->body, qr/"metadata":\{\}/, 'metadata rendered as {}');

# ids differ
isnt($r->data->{id}, $ev->{id}, 'ids differ');

# unicode ids and types
$r = $t->post_event("\x{7528}\x{6237}-\x{1F600}", "\x{e9}v\x{e9}nement");
is($r->status, 201, 'unicode ids');
is($r->data->{entityId}, "\x{7528}\x{6237}-\x{1F600}", 'unicode entityId');
is($r->data->{eventType}, "\x{e9}v\x{e9}nement", 'unicode eventType');

###############################################################################
# trimming like String.prototype.trim

$r = $t->post_event("  \t user-3 \n", "\r\n click \t");
is($r->status, 201, 'ascii spaces');
is($r->data->{entityId}, 'user-3', 'entityId trimmed');
is($r->data->{eventType}, 'click', 'eventType trimmed');

$r = $t->post_event("\x{3000}\x{a0}user-4\x{2003}\x{feff}",
	"\x{2028}view\x{200a}");
is($r->status, 201, 'unicode spaces');
is($r->data->{entityId}, 'user-4', 'entityId trimmed of unicode spaces');
is($r->data->{eventType}, 'view', 'eventType trimmed of unicode spaces');

$r = $t->post_event('a b  c', 'x y');
is($r->data->{entityId}, 'a b  c', 'inner spaces kept');

# JSON escapes in ids
$r = $t->post_json('/v1/events',
	'{"entityId":"\u0075ser-5","eventType":"t\u00e9st\ud83d\ude00"}');
is($r->status, 201, 'escaped ids');
is($r->data->{entityId}, 'user-5', 'escaped entityId');
is($r->data->{eventType}, "t\x{e9}st\x{1F600}", 'escaped eventType');

###############################################################################
# Content-Type (application/cloudevents+json is CloudEvents: t/cloudevents.t)

my $body = json_encode({ entityId => 'ct', eventType => 'ct' });

for my $ct ('application/json', 'application/json; charset=utf-8',
	'application/json;charset=UTF-8', 'Application/JSON',
	'application/vnd.api+json', 'application/merge-patch+json; charset=utf-8')
{
	$r = $t->request('POST', '/v1/events', body => $body,
		headers => ['Content-Type' => $ct]);
	is($r->status, 201, "content type '$ct' accepted") or diag $r->describe;
}

for my $ct ('text/plain', 'application/x-www-form-urlencoded',
	'multipart/form-data; boundary=x', 'application/xml',
	'application/json; charset=iso-8859-1', 'application/jsonx',
	'text/json+xml')
{
	$r = $t->request('POST', '/v1/events', body => $body,
		headers => ['Content-Type' => $ct]);
	is($r->status, 415, "content type '$ct' refused") or diag $r->describe;
	is($r->err->{code}, 'UNSUPPORTED_MEDIA_TYPE', "'$ct': code");
	ok(length($r->err->{message} // ''), "'$ct': message");
	is($r->err->{traceId}, $r->trace_id, "'$ct': traceId");
	is($r->header('Content-Type'), $CT, "'$ct': JSON answer");
}

###############################################################################
# chunked request body, keepalive

$r = $t->request('POST', '/v1/events', body => $body, chunked => 1,
	chunk_size => 5, headers => ['Content-Type' => 'application/json']);
is($r->status, 201, 'chunked body') or diag $r->describe;
is($r->data->{entityId}, 'ct', 'chunked body parsed');

my $c = $t->connect();
my $ok = 0;
for my $i (1 .. 5) {
	$r = $c->request('POST', '/v1/events', keepalive => 1,
		json => { entityId => 'ka', eventType => "t$i" });
	$ok++ if $r->status == 201 && $r->data->{eventType} eq "t$i";
}
is($ok, 5, 'five posts on one keepalive connection');
$c->close();

is($t->get('/v1/events?entityId=ka')->data->{pagination}{total}, 5,
	'keepalive posts stored');

$t->done_testing();
