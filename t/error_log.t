#!/usr/bin/perl

# Error-log context: every error-log line of a request in the module's
# locations (API, tracked, metrics) ends with ", trace id: <id>", nginx's
# own lines too: limit_req's "limiting requests", deny's "access forbidden",
# the static module's "open() failed" in a tracked location, and the "too
# large body" of a 413 that nginx answers as it chooses the location, before
# any of the module's handlers; a generated id is the one echoed in
# x-trace-id and the error body.  The module's own lines name the zone:
# the full-zone [warn] carries "usage zone "NAME"" and the trace id of the
# request that found the zone full.  A location without the module has no
# trace id in its lines.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(wait_until $UUID4_RE);

my $t = Test::Usage->new();
$t->write_config(<<'EOF')->run();
http {
    usage_zone zone=small:256k;
    limit_req_zone $binary_remote_addr zone=rl:1m rate=1r/m;

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;

        location / { usage_api small; }
        location = /info {
            usage_api small;
            limit_req zone=rl;
            limit_req_status 429;
        }
        location = /docs { usage_api small; deny all; }
        location /static/ {
            usage_track small;
            alias %%TESTDIR%%/;
        }
        location /plain/ { alias %%TESTDIR%%/; }
        location /limited/ {
            usage_api small;
            client_max_body_size 100;
        }
    }
}
EOF

sub log_lines {
	my ($re) = @_;
	return grep { /$re/ } split /\n/, $t->read_file('error.log');
}

sub line_like {
	my ($re, $name) = @_;
	my @l = wait_until { [log_lines($re)]->[0] ? [log_lines($re)] : undef } 3;
	ok(@l && $l[0], $name) or diag $t->read_file('error.log');
	return $l[0] ? @{ $l[0] } : ();
}

###############################################################################
# nginx's own lines

is($t->get('/info', headers => ['X-Trace-Id' => 'lim-1'])->status, 200,
	'within the rate');
is($t->get('/info', headers => ['X-Trace-Id' => 'lim-2'])->status, 429,
	'limited');
my ($l) = line_like(qr/limiting requests.*, trace id: lim-2$/,
	'limit_req\'s line ends with the trace id');
like($l // '', qr/\[error\].*limiting requests, excess: .* by zone "rl", client: 127\.0\.0\.1, server: localhost, request: "GET \/info HTTP\/1\.1", host: "localhost", trace id: lim-2$/,
	'after nginx\'s own context');

is($t->get('/docs', headers => ['X-Trace-Id' => 'deny-1'])->status, 403,
	'denied');
line_like(qr/access forbidden by rule.*, trace id: deny-1$/,
	'deny\'s line carries the trace id');

my $r = $t->get('/docs');
like($r->trace_id // '', $UUID4_RE, 'a generated trace id');
my $gen = $r->trace_id // 'none';
line_like(qr/access forbidden by rule.*, trace id: \Q$gen\E$/,
	'the generated id is the one in the log');

is($t->get('/static/missing', headers => ['X-Trace-Id' => 'st-1'])->status,
	404, 'tracked location: 404');
line_like(qr/open\(\) ".*missing" failed.*, trace id: st-1$/,
	'tracked location: the static module\'s line carries the trace id');

# a 413 announced by Content-Length: refused in nginx's find-config phase
for my $sent ('big-1', undef) {
	my $name = defined $sent ? '413, id sent' : '413, id generated';
	my $r = $t->request('POST', '/limited/v1/events', body => 'x' x 2000,
		headers => ['Content-Type' => 'application/json',
			defined $sent ? ('X-Trace-Id' => $sent) : ()]);
	is($r->status, 413, "$name: status");
	my $id = $r->trace_id // 'none';
	like($id, defined $sent ? qr/^\Q$sent\E\z/ : $UUID4_RE,
		"$name: x-trace-id");
	is($r->err->{traceId}, $id, "$name: the body's traceId is x-trace-id");
	my ($big) = line_like(qr/client intended to send too large body: 2000 bytes.*, trace id: \Q$id\E$/,
		"$name: the log line carries the same id");
	unlike($big // '', qr/trace id: .*trace id: /, "$name: once");
}

is($t->get('/plain/gone', headers => ['X-Trace-Id' => 'pl-1'])->status, 404,
	'a location without the module: 404');
my @plain = line_like(qr/open\(\) ".*gone" failed/, 'its line is logged');
unlike($plain[0] // '', qr/trace id/, 'without a trace id');

###############################################################################
# the module's own line: a full zone

my $pad = 'x' x 3000;
my %sent;
for my $i (1 .. 120) {
	my $r = $t->post_event("e$i", 'fill', { pad => $pad },
		headers => ['X-Trace-Id' => "full-$i"]);
	$sent{"full-$i"} = 1 if $r->status == 201;
}
is(scalar(keys %sent), 120, 'every event taken');

my @full = line_like(qr/\[warn\].*usage zone "small" is full/,
	'the full-zone warning');
is(scalar @full, 1, 'once');
my ($tid) = ($full[0] // '') =~ /, trace id: (\S+)$/;
ok($tid && $sent{$tid}, 'it carries the trace id of a POST' . ($tid ? " ($tid)" : ''));
like($full[0] // '', qr/request: "POST \/v1\/events HTTP\/1\.1"/,
	'and the request');

$t->done_testing();
