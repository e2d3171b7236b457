#!/usr/bin/perl

# The $usage_trace_id variable: in add_header (equal to x-trace-id), in
# return (valid header kept, invalid replaced, generated when absent, one
# value per request), in proxy_set_header, in log_format (the access log line holds the id the
# client received), with a custom usage_trace_header.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf wait_until $UUID4_RE);

my $t = Test::Usage->new();
$t->write_config(<<'EOF')->run();
http {
    usage_zone zone=usage:1m;
    log_format trace '$request_uri tid=$usage_trace_id status=$status';

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;
        access_log %%TESTDIR%%/trace.log trace;

        location / {
            usage_api usage;
            add_header X-Tid $usage_trace_id always;
        }

        location /ret {
            return 200 "tid=$usage_trace_id again=$usage_trace_id\n";
        }

        location /hdr {
            usage_trace_header X-Request-Id;
            return 200 "tid=$usage_trace_id\n";
        }

        location /proxy {
            proxy_pass http://127.0.0.1:%%PORT%%/echo;
            proxy_set_header X-Up $usage_trace_id;
            add_header X-Down $usage_trace_id;
        }

        location /echo {
            return 200 "up=$http_x_up\n";
        }
    }
}
EOF

my $r = $t->get('/health', headers => ['X-Trace-Id' => 'var-1']);
is($r->header('X-Tid'), 'var-1', 'add_header with a given id');
is($r->trace_id, 'var-1', 'x-trace-id');

$r = $t->get('/health');
like($r->header('X-Tid') // '', $UUID4_RE, 'add_header with a generated id');
is($r->header('X-Tid'), $r->trace_id, 'add_header equals x-trace-id');

$r = $t->get('/nope');
is($r->header('X-Tid'), $r->err->{traceId}, 'add_header on an error');

$r = $t->get('/ret', headers => ['X-Trace-Id' => 'ret-1']);
is($r->body, "tid=ret-1 again=ret-1\n", 'return with a given id');

$r = $t->get('/ret');
my ($id1, $id2) = $r->body =~ /^tid=(\S+) again=(\S+)$/;
like($id1 // '', $UUID4_RE, 'return with a generated id');
is($id1, $id2, 'one generated id per request');

$r = $t->get('/ret', headers => ['X-Trace-Id' => 'bad id!']);
like(($r->body =~ /^tid=(\S+)/)[0] // '', $UUID4_RE,
	'return with an invalid id replaced');

$r = $t->get('/ret', headers => [traceparent =>
	'00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01']);
like($r->body, qr/^tid=0af7651916cd43dd8448eb211c80319c /,
	'return with traceparent');

$r = $t->get('/hdr', headers => ['X-Request-Id' => 'req-9',
	'X-Trace-Id' => 'no']);
is($r->body, "tid=req-9\n", 'custom trace header in a location');

$r = $t->get('/proxy', headers => ['X-Trace-Id' => 'prx-1']);
is($r->body, "up=prx-1\n", 'proxy_set_header with a given id');
$r = $t->get('/proxy');
my ($up) = $r->body =~ /^up=(\S+)/;
like($up // '', $UUID4_RE, 'proxy_set_header with a generated id');
is($r->header('X-Down'), $up, 'same id upstream and downstream');

###############################################################################
# log_format

my $api = $t->get('/v1/events?limit=1');
my $gen = $api->trace_id;
$t->get('/ret', headers => ['X-Trace-Id' => 'log-1']);

my $log = wait_until {
	my $l = $t->read_file('trace.log');
	$l =~ /tid=log-1/ ? $l : undef
} 5;
like($log // '', qr{^/v1/events\?limit=1 tid=\Q$gen\E status=200$}m,
	'access log has the generated id of the API request');
like($log // '', qr{^/ret tid=log-1 status=200$}m,
	'access log has the given id');

$t->done_testing();
