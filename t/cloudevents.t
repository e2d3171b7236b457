#!/usr/bin/perl

# CloudEvents ingestion, as OpenMeter's clients send usage: CloudEvents 1.0
# in its structured JSON format.
#   - application/cloudevents+json on POST /v1/events: subject is the
#     entity, type the event type, id the idempotency id, time the
#     timestamp, data the metadata, a numeric data.value the value;
#   - application/cloudevents-batch+json (an array), on POST /v1/events or
#     /v1/events/batch: a batch, all stored or none;
#   - the examples of the CloudEvents 1.0 JSON format spec, and
#     OpenMeter's; every bad input its own status, code and message.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf json_encode iso_ms);
use Time::HiRes qw(time);

my $t = Test::Usage->new();
$t->write_config(api_conf())->run();

my $CE = 'application/cloudevents+json';
my $CEB = 'application/cloudevents-batch+json';

sub post {
	my ($path, $type, $body) = @_;
	return $t->request('POST', $path, headers => ['Content-Type' => $type],
		body => ref $body ? json_encode($body) : $body);
}

sub error_is {
	my ($r, $status, $msg, $name) = @_;
	my $e = ($r->json // {})->{error} // {};
	is($r->status, $status, "$name: $status");
	is($e->{code}, 'VALIDATION_ERROR', "$name: VALIDATION_ERROR")
		if $status == 400;
	is($e->{message}, $msg, "$name: message") if defined $msg;
	return $e;
}

sub summary { $t->get("/v1/usage/$_[0]")->data }

my $now = iso_ms(int(time() * 1000) - 5000);

# the example of the CloudEvents 1.0 JSON format spec (section 3.1), with a
# subject and a time inside the window
my $spec = {
	specversion => '1.0',
	type => 'com.example.someevent',
	source => '/mycontext',
	subject => 'spec-subject',
	id => 'C234-1234-1234',
	time => $now,
	comexampleextension1 => 'value',
	comexampleothervalue => 5,
	datacontenttype => 'application/json',
	data => { appinfoA => 'abc', appinfoB => 123, appinfoC => JSON::PP::true },
};
my $r = post('/v1/events', $CE, $spec);
is($r->status, 201, 'the spec example: 201') or diag($r->body);
my $d = $r->data;
is($d->{id}, 'C234-1234-1234', 'id: the idempotency id');
is($d->{entityId}, 'spec-subject', 'subject: the entity');
is($d->{eventType}, 'com.example.someevent', 'type: the event type');
is($d->{timestamp}, $now, 'time: the timestamp');
is_deeply($d->{metadata}, { appinfoA => 'abc', appinfoB => 123,
	appinfoC => JSON::PP::true }, 'data: the metadata');
is($d->{value}, 1, 'no data.value: 1');
$r = post('/v1/events', $CE, $spec);
is($r->status, 200, 'sent again: 200, stored already');
is(summary('spec-subject')->{totalEvents}, 1, 'counted once');

# the spec's own example as it stands: subject null, time in 2018
$spec->{subject} = undef;
$spec->{time} = '2018-04-05T17:31:00Z';
error_is(post('/v1/events', $CE, $spec), 400,
	'CloudEvent is missing required attributes: subject',
	'the spec example as written (no subject)');
$spec->{subject} = 'spec-subject';
$r = post('/v1/events', $CE, $spec);
error_is($r, 400, undef, 'a time outside the window');
like($r->json->{error}{message}, qr/^timestamp /, 'named as the timestamp');

# OpenMeter's quickstart event, with data.value
my $om = { specversion => '1.0', type => 'prompt', id => 'om-00001',
	time => $now, source => 'my-app', subject => 'customer-1',
	data => { tokens => '100', model => 'gpt-4-turbo', type => 'input',
		value => 100 } };
$r = post('/v1/events', $CE, $om);
is($r->status, 201, "OpenMeter's example: 201");
is($r->data->{value}, 100, 'a numeric data.value: the value');
is(summary('customer-1')->{totalValue}, 100, 'summed');
$om->{id} = 'om-00002';
$om->{data}{value} = '7';
$r = post('/v1/events', $CE, $om);
is($r->data->{value}, 1, 'a data.value that is not a number: not the value');
is($r->data->{metadata}{value}, '7', 'it stays in the metadata');

# bad CloudEvents
my %bad = (
	'{"specversion":"1.0"}' =>
		'CloudEvent is missing required attributes: id, source, type, subject',
	'{"specversion":"0.3","id":"a","source":"s","type":"t","subject":"e"}' =>
		'specversion must be "1.0"',
	'{"specversion":1.0,"id":"a","source":"s","type":"t","subject":"e"}' =>
		'specversion must be "1.0"',
	'{"specversion":"1.0","id":"a","source":"s","type":"t","subject":"e","data":"text"}' =>
		'data must be a JSON object',
	'{"specversion":"1.0","id":"a","source":"s","type":"t","subject":"e","data_base64":"AA=="}' =>
		'data_base64 is not supported: send data as JSON',
	'[1]' => 'A CloudEvent must be a JSON object',
	'{"specversion":"1.0","id":"a","source":"s","type":"t","subject":7}' =>
		'entityId must be a string',
	'{"specversion":"1.0",' => undef,
);
for my $body (sort keys %bad) {
	my $e = error_is(post('/v1/events', $CE, $body), 400, $bad{$body},
		"bad CloudEvent $body");
	like($e->{message}, qr/^Malformed JSON/, 'not JSON') unless $bad{$body};
}

# --- batches -----------------------------------------------------------------

my @batch = map { { specversion => '1.0', type => 'call', source => 'svc',
	subject => 'ce-batch', id => "ce-$_", time => $now,
	data => { value => $_ } } } 1 .. 3;
for my $path ('/v1/events/batch', '/v1/events') {
	my $b = [ map { { %$_, id => "$path-$_->{id}" } } @batch ];
	$r = post($path, $CEB, $b);
	is($r->status, 201, "a CloudEvents batch to $path: 201");
	is($r->data->{stored}, 3, "$path: 3 stored");
	is_deeply([map { $_->{id} } @{ $r->data->{events} }],
		[map { $_->{id} } @$b], "$path: their ids, in order");
}
is(summary('ce-batch')->{totalValue}, 12, 'both batches counted, values summed');

$r = post('/v1/events/batch', $CE, { %{ $batch[0] }, id => 'one' });
is($r->status, 201, 'one CloudEvent to the batch endpoint: a batch of one');
is($r->data->{stored}, 1, 'stored');

my $e = error_is(post('/v1/events/batch', $CEB,
	[ $batch[0], { %{ $batch[1] }, specversion => '2.0', id => 'x' }, 5 ]),
	400, '2 of 3 events are invalid (the first: index 1); nothing was stored',
	'a bad batch');
is_deeply($e->{details}, [
	{ index => 1, message => 'specversion must be "1.0"' },
	{ index => 2, message => 'A CloudEvent must be a JSON object' },
], 'each by index');
is(summary('ce-batch')->{totalEvents}, 7, 'nothing of it stored');

error_is(post('/v1/events/batch', $CEB, '{"events":[]}'), 400,
	'Request body must be a JSON array of CloudEvents', 'not an array');
error_is(post('/v1/events/batch', $CEB, '[]'), 400,
	'A batch holds 1 to 1000 events, not 0', 'an empty array');
error_is(post('/v1/events/batch', $CEB, ''), 400,
	'Request body must be a JSON array of CloudEvents', 'an empty body');

# the media type is compared without case, parameters aside
$r = post('/v1/events', 'Application/CloudEvents+JSON; charset=utf-8',
	{ %$om, id => 'om-case' });
is($r->status, 201, 'media type without case, with a charset');
error_is(post('/v1/events', 'application/cloudevents+json; charset=latin1',
	$om), 415, undef, 'another charset: 415');

$t->done_testing();
