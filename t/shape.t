#!/usr/bin/perl

# The shape of src/ (scripts/shape, on the objects of the build under
# test): the calls between the module's files and the includes between
# its headers have no cycle, so that every file calls only the layers
# below it; no function is longer than 150 lines without saying why.  And
# the checker itself finds a cycle and a long function when there is one.

use strict;
use warnings;

use FindBin;
use Test::More;
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use File::Copy qw(copy);

my $root = dirname($FindBin::Bin);
my $module = $ENV{USAGE_MODULE} // "$root/build/nginx/ngx_http_usage_module.so";
my $objdir = dirname($module) . '/addon/src';

ok(-d $objdir, "the build's objects are in $objdir")
	or BAIL_OUT('no objects: build with scripts/build.sh');

my $out = `perl $root/scripts/shape $objdir 2>&1`;
is($? >> 8, 0, 'scripts/shape passes') or diag($out);
unlike($out, qr/CYCLE/, 'no cycle in the calls or the includes');
like($out, qr/^layers of the calls/m, 'the layers of the calls are listed');
like($out, qr/^\s+0: .*\bid\b/m, 'the random ids are in the lowest layer');
like($out, qr/^\s+\d+: module$/m, 'the module file is alone in the top layer');
unlike($out, qr/TOO LONG/, 'no function over 150 lines');

# the checker fails where it must: a copy of the sources in which a
# low file calls the top one, and a function grows past 150 lines

my $tmp = tempdir(CLEANUP => 1);
mkdir "$tmp/src" or die;
mkdir "$tmp/scripts" or die;
copy("$root/scripts/shape", "$tmp/scripts/shape") or die;
opendir(my $dh, "$root/src") or die;
for my $f (grep { /\.[ch]$/ } readdir $dh) {
	copy("$root/src/$f", "$tmp/src/$f") or die;
}
closedir $dh;

open(my $fh, '>>', "$tmp/src/ngx_http_usage_id.c") or die;
print $fh "\n\nvoid\nngx_http_usage_shape_test(void)\n{\n",
	"    int  i;\n\n", ("    i = 0;\n") x 150, "    (void) i;\n}\n";
close $fh;

# objects: the real ones, with id.o made to call the API's handler
my $fake = "$tmp/obj";
mkdir $fake or die;
opendir($dh, $objdir) or die;
for my $o (grep { /\.o$/ } readdir $dh) {
	copy("$objdir/$o", "$fake/$o") or die;
}
closedir $dh;
my $c = "$tmp/call.c";
open($fh, '>', $c) or die;
print $fh "extern int ngx_http_usage_api_handler(void *r);\n",
	"int ngx_http_usage_shape_call(void) { return ngx_http_usage_api_handler(0); }\n";
close $fh;
system("cc -c -o $tmp/call.o $c") == 0 or die "cc failed";
system("ld -r -o $fake/ngx_http_usage_id.o $objdir/ngx_http_usage_id.o $tmp/call.o") == 0
	or die "ld -r failed";

my $bad = `perl $tmp/scripts/shape $fake 2>&1`;
isnt($? >> 8, 0, 'a broken shape fails');
like($bad, qr/CYCLE in the calls: .*\bid\b/, 'the cycle through id is found');
like($bad, qr/TOO LONG/, 'the long function is found');

done_testing();
