#!/usr/bin/perl

# usage_api_keys: keys from a file of "<key> <client> <entity|*> <role>"
# lines, compared byte for byte.
#   - no key, an unknown or empty one, a key twice: 401 UNAUTHORIZED JSON
#     with WWW-Authenticate; a key with its case changed, a prefix or an
#     extension of a key, one differing in its last byte: 401;
#   - the role is a column: clients named "Admin", "ADMIN" and "admin" with
#     role client get 403 on /v1/usage/stats and /info and read only their
#     entity; a role-admin key reads stats, /info and (with "*") every
#     entity; an admin key for one entity reads stats but no other entity;
#   - entity "*" with role client: any entity (summary, list, POST), no
#     stats;
#   - tabs, CRLF and comments in the file; usage_api_keys off; a CORS
#     preflight needs no key, another OPTIONS does;
#   - $usage_api_client and $usage_api_role in the access log, limit_req
#     keyed on $usage_api_client; usage_api_key_header; "satisfy any"
#     admitting a request without a key, which then reads nothing;
#   - a reload with a changed file: the old key 401, the new one 200; a
#     reload with a malformed file is refused with an emerg naming the file
#     and line, and the old keys keep working;
#   - nginx -t on malformed files: each fails naming the file and the line,
#     never showing a key.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf wait_until);

my $t = Test::Usage->new();

my %KEY = (
	alpha => 'k-alpha-3f9c0e6b8d2a41f7',    # alpha, ent-a, client
	Admin => 'k-Admin-0b7e5d2c9a4f18e3',    # Admin, ent-b, client
	ADMIN => 'k-ADMIN-b6d07c51a9e2f4d8',    # ADMIN, ent-c, client
	admin => 'k-admin-3c6b0a17e5d9f2c4',    # admin, ent-d, client
	ops => 'k-ops-5a8d1f03c7e9b4a2ee',      # ops, *, admin
	reader => 'k-reader-e4d1a0c97b3f5e21',  # reader, *, client
	boss => 'k-boss-9d41e7c3b2a05f68',      # boss, ent-a, admin
	tab => 'k-tab-7c2e9a4b1d8f3e60aa',      # tabbed, ent-t, client
);

sub keyfile {
	return join '', "# key  client  entity  role\n", "\n",
		"$KEY{alpha}  alpha  ent-a  client\n",
		"$KEY{Admin}  Admin  ent-b  client\n",
		"   $KEY{ADMIN} ADMIN ent-c client   # trailing comment\n",
		"$KEY{admin}  admin  ent-d  client\n",
		"  # an indented comment\n",
		"$KEY{ops}  ops  *  admin\n",
		"$KEY{reader}  reader  *  client\n",
		"$KEY{boss}  boss  ent-a  admin\n",
		"\t$KEY{tab}\ttabbed\tent-t\tclient\r\n",
		@_;
}

$t->write_file('keys', keyfile());

$t->write_config(<<'EOF')->run();
http {
    usage_zone zone=usage:1m;

    limit_req_zone $usage_api_client zone=per_client:1m rate=1r/m;
    limit_req_status 429;

    log_format keys '$usage_trace_id|$usage_api_client|$usage_api_role|'
                    '$status';

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;

        usage_api_keys keys;
        access_log %%TESTDIR%%/access.log keys;

        location / {
            usage_api usage;
        }

        location = /health {
            usage_api usage;
            usage_api_keys off;
        }

        location = /v1/usage/limited {
            usage_api usage;
            limit_req zone=per_client burst=1 nodelay;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        server_name localhost;

        usage_api_key_header X-Other-Key;

        location / {
            usage_api usage;
            usage_api_keys %%TESTDIR%%/keys;
        }

        location /v1/events {
            usage_api usage;
            usage_api_keys keys;
            satisfy any;
            allow 127.0.0.1;
            deny all;
        }
    }
}
EOF

my $port2 = $t->{port2};

sub as {
	my ($who, $method, $path, %o) = @_;
	my $key = exists $KEY{$who} ? $KEY{$who} : $who;
	return $t->request($method, $path, %o,
		headers => ['X-Api-Key' => $key, @{ $o{headers} || [] }]);
}

sub json_error {
	my ($r, $status, $code, $name) = @_;
	is($r->status, $status, "$name: $status") or diag $r->describe;
	is($r->header('Content-Type'), 'application/json; charset=utf-8',
		"$name: JSON");
	is_deeply([sort keys %{ $r->err }], [qw(code message traceId)],
		"$name: code, message, traceId");
	is($r->err->{code}, $code, "$name: $code");
	is($r->err->{traceId}, $r->trace_id, "$name: the trace id");
}

sub unauthorized {
	my ($r, $name) = @_;
	json_error($r, 401, 'UNAUTHORIZED', $name);
	is($r->header('WWW-Authenticate'), 'ApiKey header="X-Api-Key"',
		"$name: WWW-Authenticate");
}

# some data, with the key for every entity
for my $e (qw(ent-a ent-b ent-c ent-d ent-t other)) {
	is(as('ops', 'POST', '/v1/events',
		json => { entityId => $e, eventType => 'call' })->status,
		201, "ops posts for $e");
}

###############################################################################
# who is refused

unauthorized($t->get('/v1/usage/stats'), 'no key');
unauthorized(as('k-nobody-00000000000000', 'GET', '/v1/usage/ent-a'),
	'an unknown key');
unauthorized(as('', 'GET', '/v1/usage/ent-a'), 'an empty key');
unauthorized($t->post_event('ent-a', 'x', undef), 'POST without a key');
is($t->get('/v1/usage/ent-a', headers => ['X-Api-Key' => $KEY{alpha},
	'X-Api-Key' => $KEY{alpha}])->status, 401, 'the key twice: 401');

my $alpha = $KEY{alpha};
is(as('alpha', 'GET', '/v1/usage/ent-a')->status, 200, 'the key: 200');
for my $case ([uc $alpha, 'upper-cased'], [ucfirst $alpha, 'first letter'],
	[do { (my $k = $alpha) =~ s/f7$/F7/; $k }, 'last letter'],
	[lc $KEY{Admin}, 'lower-cased'],
	[substr($alpha, 0, -1), 'a prefix'],
	[substr($alpha, 0, 16), 'a 16-byte prefix'],
	["${alpha}x", 'an extension'], ["x$alpha", 'a byte in front'],
	["$alpha ", 'a trailing space (nginx trims it: the key)'],
	[substr($alpha, 0, -1) . '8', 'the last byte differs'])
{
	my ($key, $what) = @$case;
	my $want = $what =~ /nginx trims/ ? 200 : 401;
	is(as($key, 'GET', '/v1/usage/ent-a')->status, $want, "$what: $want");
}

###############################################################################
# roles: a column, not a name

my $STORE = 'This API key may only read entity "%s", not store-wide '
	. 'statistics';
for my $case ([qw(Admin ent-b)], [qw(ADMIN ent-c)], [qw(admin ent-d)]) {
	my ($who, $entity) = @$case;
	my $r = as($who, 'GET', '/v1/usage/stats');
	json_error($r, 403, 'FORBIDDEN', "client \"$who\", role client: stats");
	is($r->err->{message}, sprintf($STORE, $entity),
		"client \"$who\": the message names its entity");
	is(as($who, 'GET', '/info')->status, 403, "client \"$who\": /info 403");
	is(as($who, 'GET', "/v1/usage/$entity")->status, 200,
		"client \"$who\": its own entity");
	is(as($who, 'GET', '/v1/usage/other')->status, 403,
		"client \"$who\": another entity 403");
	my $l = as($who, 'GET', '/v1/events');
	is_deeply([map { $_->{entityId} } @{ $l->data->{events} || [] }],
		[$entity], "client \"$who\": the list is its own entity's");
}

my $r = as('ops', 'GET', '/v1/usage/stats');
is($r->status, 200, 'role admin: stats') or diag $r->describe;
is($r->data->{totalEvents}, 6, 'role admin: every event');
is(as('ops', 'GET', '/info')->status, 200, 'role admin: /info');
is(as('ops', 'GET', '/v1/usage/ent-b')->status, 200,
	'role admin, "*": any entity');

is(as('boss', 'GET', '/v1/usage/stats')->status, 200,
	'role admin for one entity: stats');
is(as('boss', 'GET', '/v1/usage/ent-a')->status, 200,
	'role admin for one entity: that entity');
$r = as('boss', 'GET', '/v1/usage/ent-b');
json_error($r, 403, 'FORBIDDEN', 'role admin for one entity: another one');
is($r->err->{message}, 'This API key may only read entity "ent-a"',
	'the message names its entity');
$r = as('boss', 'POST', '/v1/events',
	json => { entityId => 'ent-b', eventType => 'sneak' });
is($r->status, 403, 'role admin for one entity: no POST for another');

###############################################################################
# entity "*", role client

for my $e (qw(ent-a ent-d other)) {
	is(as('reader', 'GET', "/v1/usage/$e")->status, 200,
		"\"*\", role client: reads $e");
}
is(as('reader', 'POST', '/v1/events',
	json => { entityId => 'ent-b', eventType => 'any' })->status, 201,
	'"*", role client: records for any entity');
is(as('reader', 'GET', '/v1/events?limit=100')->data->{pagination}{total}, 7,
	'"*", role client: the list is not filtered');
$r = as('reader', 'GET', '/v1/usage/stats');
json_error($r, 403, 'FORBIDDEN', '"*", role client: stats');
is($r->err->{message}, 'This API key may read any entity, not store-wide '
	. 'statistics (role admin only)', '"*", role client: the message');
is(as('reader', 'GET', '/info')->status, 403, '"*", role client: /info');

###############################################################################
# the file's syntax, off, preflights

is(as('tab', 'GET', '/v1/usage/ent-t')->status, 200,
	'a line of tabs ending in CRLF');
is(as('tab', 'GET', '/v1/usage/ent-a')->status, 403, 'with its entity');
is(as('ADMIN', 'GET', '/v1/usage/ent-c')->status, 200,
	'an indented line with a comment after it');
is($t->get('/health')->status, 200, 'usage_api_keys off: no key needed');

$r = $t->options('/v1/events', headers => ['Origin' => 'https://app.example',
	'Access-Control-Request-Method' => 'POST',
	'Access-Control-Request-Headers' => 'x-api-key,content-type']);
is($r->status, 204, 'a CORS preflight without a key: 204');
is($t->options('/v1/events')->status, 401,
	'another OPTIONS without a key: 401');

###############################################################################
# variables, limit_req

as('alpha', 'GET', '/v1/usage/ent-a', headers => ['X-Trace-Id' => 'v-1']);
as('ops', 'GET', '/v1/usage/ent-a', headers => ['X-Trace-Id' => 'v-2']);
as(uc $alpha, 'GET', '/v1/usage/ent-a', headers => ['X-Trace-Id' => 'v-3']);
my %log;
wait_until {
	%log = map { /^([^|]*)\|(.*)$/ ? ($1 => $2) : () }
		split /\n/, $t->read_file('access.log');
	exists $log{'v-3'};
} 3;
is($log{'v-1'}, 'alpha|client|200', '$usage_api_client, $usage_api_role');
is($log{'v-2'}, 'ops|admin|200', 'the admin role');
is($log{'v-3'}, '||401', 'empty without a known key');

my @st = map { as('reader', 'GET', '/v1/usage/limited')->status } 1 .. 3;
is("@st", '200 200 429', 'limit_req on $usage_api_client: rate, burst, 429');
is(as('ops', 'GET', '/v1/usage/limited')->status, 200,
	'another client has its own rate');
@st = map { $t->get('/v1/usage/limited')->status } 1 .. 4;
is("@st", '401 401 401 401', 'without a key: 401, never counted');

###############################################################################
# usage_api_key_header; satisfy any

$r = $t->get('/v1/usage/ent-a', port => $port2,
	headers => ['X-Api-Key' => $alpha]);
is($r->status, 401, 'usage_api_key_header X-Other-Key: X-Api-Key is not it');
is($r->header('WWW-Authenticate'), 'ApiKey header="X-Other-Key"',
	'the challenge names the header');
is($t->get('/v1/usage/ent-a', port => $port2,
	headers => ['X-Other-Key' => $alpha])->status, 200, 'X-Other-Key is');

$r = $t->get('/v1/events', port => $port2);
is($r->status, 200, 'satisfy any, no key: admitted');
is($r->data->{pagination}{total}, 0, 'satisfy any, no key: lists no entity');
$r = $t->get('/v1/events?entityId=ent-a', port => $port2);
json_error($r, 403, 'FORBIDDEN', 'satisfy any, no key: an entity');
is($r->err->{message}, 'This request has no API key: it may not read or '
	. 'record usage', 'satisfy any, no key: the message');
is($t->get('/v1/events', port => $port2, headers => ['X-Other-Key' => $alpha])
	->data->{pagination}{total}, 1, 'satisfy any, a key: its entity');

###############################################################################
# reload

my $new = 'k-new-1d8f3e60aa7c2e9a4b';
$t->write_file('keys', join '', grep { !/\Q$alpha\E/ }
	split /^/, keyfile("$new  alpha  ent-a  client\n"));
ok($t->reload(), 'reloaded with a changed key file');
is(as($alpha, 'GET', '/v1/usage/ent-a')->status, 401, 'the old key: 401');
is(as($new, 'GET', '/v1/usage/ent-a')->status, 200, 'the new key: 200');

$t->write_file('keys', keyfile("$alpha  alpha  ent-a  superuser\n"));
ok(!$t->reload(timeout => 2, may_fail => 1),
	'a malformed file: no new workers');
my $line = () = keyfile() =~ /\n/g;
$line++;
ok(wait_until(sub { $t->read_file('error.log')
	=~ /\[emerg\].*\Q$t->{dir}\E\/keys:$line: unknown role "superuser"/ }, 5),
	"the emerg names the file and line $line");
is(as($new, 'GET', '/v1/usage/ent-a')->status, 200,
	'the old configuration keeps its keys');
is(as($alpha, 'GET', '/v1/usage/ent-a')->status, 401,
	'and not the malformed file\'s');
$t->allow_emerg(qr/keys:$line: unknown role "superuser"/);

###############################################################################
# nginx -t

my $long = 'é' x 256;
utf8::encode($long);
for my $case (
	["$alpha alpha ent-a superuser\n", 1, qr/unknown role "superuser", "admin" or "client" expected/],
	["$alpha alpha ent-a Admin\n", 1, qr/unknown role "Admin"/],
	["# one\n$alpha alpha ent-a $KEY{ops}\n", 2, qr/unknown role, "admin"/],
	["k-short-123 alpha ent-a client\n", 1, qr/a key must be 16 to 256 bytes of printable ASCII without whitespace, this one has 11 bytes/],
	[('k' x 257) . " alpha ent-a client\n", 1, qr/this one has 257 bytes/],
	["k-\x01-0123456789abcdef alpha ent-a client\n", 1, qr/a key must be 16 to 256 bytes of printable ASCII without whitespace, byte 3 of this one is not/],
	["k-\xc3\xa9-0123456789abcdef alpha ent-a client\n", 1, qr/printable ASCII/],
	["$alpha alpha ent-a client\n\n$KEY{ops} ops * admin\n$alpha beta ent-b client\n", 4, qr/duplicate key, the same as on line 1/],
	["$alpha alpha ent-a\n", 1, qr/3 fields, 4 expected: <key> <client> <entity\|\*> <role>/],
	["$alpha\n", 1, qr/1 field, 4 expected/],
	["$alpha alpha ent-a client extra\n", 1, qr/5 fields, 4 expected/],
	["$alpha alpha $long client\n", 1, qr/the entity must be 255 characters or less/],
	["$alpha alpha ent-\xff client\n", 1, qr/the entity is not valid UTF-8/],
	["$alpha alpha ent-\x0b client\n", 1, qr/the entity must not contain control characters/],
	["$alpha alpha\x7f ent-a client\n", 1, qr/the client name must not contain control characters/],
	["$alpha alpha \xc2\xa0ent-a client\n", 1, qr/the entity must not begin or end with whitespace/])
{
	my ($text, $n, $re) = @$case;
	$t->write_file('bad-keys', $text);
	my ($code, $out) = $t->check_config(api_conf(
		location => 'usage_api_keys bad-keys;'));
	(my $name = $text) =~ s/[^\x20-\x7e]/?/g;
	$name = substr($name, 0, 60);
	isnt($code, 0, "nginx -t fails: $name");
	like($out, qr/\[emerg\] \Q$t->{dir}\E\/bad-keys:$n: .*$re/,
		"$name: the message, with the file and line $n") or diag $out;
	unlike($out, qr/\Q$alpha\E|\Q$KEY{ops}\E/, "$name: no key shown");
}

my ($code, $out) = $t->check_config(api_conf(
	location => 'usage_api_keys missing-keys;'));
isnt($code, 0, 'nginx -t fails: a missing file');
like($out, qr/\[emerg\] cannot read the API keys: open\(\) "\Q$t->{dir}\E\/missing-keys" failed \(2: No such file or directory\) in \S+:\d+/,
	'a missing file: named, with the line of the directive') or diag $out;

($code, $out) = $t->check_config(api_conf(location => "usage_api_keys $t->{dir};"));
isnt($code, 0, 'nginx -t fails: a directory');
like($out, qr/\[emerg\] cannot read the API keys: "\Q$t->{dir}\E" is not a file/,
	'a directory: the message') or diag $out;

($code, $out) = $t->check_config(api_conf(
	location => 'usage_api_keys off; usage_api_keys off;'));
like($out, qr/\[emerg\] "usage_api_keys" directive is duplicate/,
	'usage_api_keys twice') or diag $out;
($code, $out) = $t->check_config(api_conf(
	location => 'usage_api_key_header "X Key";'));
like($out, qr/\[emerg\] "usage_api_key_header" directive is not a valid header name/,
	'usage_api_key_header: a token') or diag $out;

$t->write_file('empty-keys', "# no keys yet\n");
($code, $out) = $t->check_config(api_conf(
	http => 'usage_api_keys empty-keys;',
	location => 'location /open { usage_api usage; usage_api_keys off; }'));
is($code, 0, 'an empty key file, and off in a location: nginx -t passes')
	or diag $out;
unlike($out, qr/\[(?:emerg|alert|crit|warn)\]/, 'without a warning');

$t->done_testing();
