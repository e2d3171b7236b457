#!/usr/bin/perl

# The Debian package (scripts/package) of the module under test
# (USAGE_MODULE): its name, file list, control fields and maintainer
# scripts, read with dpkg-deb; the module in it stripped; lintian finds no
# error, and scripts/package fails when lintian reports one.  Then the
# package is installed with the real dpkg into a scratch root (dpkg --root,
# an empty database there, --force-depends: nginx and the libraries are the
# machine's, not the root's; --force-script-chrootless: the maintainer
# scripts run here with DPKG_ROOT set to the root, which the package's
# scripts honour, checked before anything runs) and shown to work as it
# does on a server: the postinst links modules-enabled/50-mod-http-usage.conf
# to the package's modules-available file, and the stock nginx, whose
# configuration starts with "include <root>/etc/nginx/modules-enabled/*.conf;"
# and whose prefix is <root>/usr/share/nginx/ (Debian's /usr/share/nginx/,
# so the package's "load_module modules/...so;" is used as it is), passes
# nginx -t and serves a POST and a GET of one event (master, 2 workers).
# The link's target is the installed system's absolute path: for nginx
# here it is pointed into the root (and back).  An upgrade keeps the link
# as the administrator left it (present, or deleted), a remove disables it
# (renamed .removed: nginx no longer loads the module), a reinstall after
# the remove enables it again, a purge deletes it; the machine's own
# /etc/nginx/modules-enabled and dpkg database are untouched.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf);
use Test::UsageProd qw(build_package);
use File::Path qw(make_path);
use POSIX ();

my $repo = $Test::UsageProd::REPO;
my $pkg = 'libnginx-mod-http-usage';
my $built = $ENV{USAGE_MODULE} || "$repo/build/nginx/ngx_http_usage_module.so";
my $so_path = '/usr/lib/nginx/modules/ngx_http_usage_module.so';
my $avail = '/usr/share/nginx/modules-available/mod-http-usage.conf';
my $enabled = '/etc/nginx/modules-enabled/50-mod-http-usage.conf';

plan skip_all => "no module at $built (scripts/build.sh)" unless -f $built;

# the test's directory, the scratch root in it
my $t0 = Test::Usage->new();
my $dir = $t0->dir;
my $root = "$dir/root";
# the server of the package: Debian's prefix, inside the scratch root
my $t = Test::Usage->new(prefix => "$root/usr/share/nginx/",
	module => "$root$so_path");

sub slurp {
	my ($path) = @_;
	open my $fh, '<', $path or return undef;
	binmode $fh;
	local $/;
	return scalar <$fh>;
}

# a command without a shell; (exit code, its stdout)
sub cmd {
	my @argv = @_;
	my $pid = open(my $fh, '-|') // die "fork: $!";
	if ($pid == 0) {
		exec(@argv) or POSIX::_exit(127);
	}
	binmode $fh;
	local $/;
	my $out = <$fh> // '';
	close $fh;
	return ($? >> 8, $out);
}
# the same with stderr
sub cmd_all { cmd('sh', '-c', '"$@" 2>&1', 'sh', @_) }

# the rest cannot run
sub give_up {
	my ($why) = @_;
	ok(0, $why);
	$t0->finish();
	$t->done_testing();
	exit 1;
}

###############################################################################
# the package

my ($upstream) = (slurp("$repo/src/ngx_http_usage_module.h") // '')
	=~ /^#define NGX_HTTP_USAGE_VERSION\s+"([^"]+)"/m;
my $version = "$upstream-1";
my (undef, $arch) = cmd('dpkg', '--print-architecture');
chomp $arch;
my (undef, $provides) = cmd('dpkg-query', '-W', '-f=${Provides}', 'nginx');
my @abi = $provides =~ /\b(nginx-abi-[^\s,]+)/g;
is(scalar @abi, 1, "the installed nginx provides one nginx ABI (@abi)");
my $abi = $abi[0] // 'nginx-abi-?';

my ($code, $log, $deb) = build_package(out => "$dir/out", module => $built);
is($code, 0, 'scripts/package builds the package') or diag $log;
give_up('no package: nothing else to check') unless $deb;
is($deb =~ s{.*/}{}r, "${pkg}_${version}_${arch}.deb",
	'named <package>_<version>_<architecture>.deb');

# the file list, exactly
my (undef, $list) = cmd('dpkg-deb', '-c', $deb);
my %entry;
for (split /\n/, $list) {
	my ($mode, $owner, $path) = /^(\S+)\s+(\S+)\s+\d+\s+\S+\s+\S+\s+\.(\S*)/
		or next;
	$entry{$path eq '/' ? '/' : $path =~ s{/$}{}r} = [$mode, $owner];
}
my $doc = "/usr/share/doc/$pkg";
my @files = ($so_path, $avail, "$doc/README.md.gz", "$doc/changelog.Debian.gz",
	"$doc/copyright");
my @dirs = ('/', qw(/usr /usr/lib /usr/lib/nginx /usr/lib/nginx/modules
	/usr/share /usr/share/doc), $doc, '/usr/share/nginx',
	'/usr/share/nginx/modules-available');
is(join("\n", sort keys %entry), join("\n", sort @files, @dirs),
	'the file list: the module, its modules-available file, the docs')
	or diag $list;
is(join(' ', map { "$_=$entry{$_}[0]" } grep { $entry{$_} } @files),
	join(' ', map { "$_=-rw-r--r--" } @files), 'files 0644');
is(join(' ', map { "$_=$entry{$_}[0]" } grep { $entry{$_} } @dirs),
	join(' ', map { "$_=drwxr-xr-x" } @dirs), 'directories 0755');
is(join(' ', sort keys %{ { map { $_->[1] => 1 } values %entry } }),
	'root/root', 'all owned by root');

# the control fields
my %f;
for my $field (qw(Package Version Architecture Depends Recommends Section
	Priority Maintainer Description Installed-Size))
{
	(undef, $f{$field}) = cmd('dpkg-deb', '-f', $deb, $field);
	chomp $f{$field};
}
is($f{Package}, $pkg, "Package: $pkg");
is($f{Version}, $version, "Version: $version (NGX_HTTP_USAGE_VERSION)");
is($f{Architecture}, $arch, "Architecture: $arch");
my %dep = map { /^(\S+)/ ? ($1 => $_) : () } split /,\s*/, $f{Depends};
is($dep{$abi}, $abi, "Depends: $abi, unversioned, as Debian's modules")
	or diag "Depends: $f{Depends}";
like($dep{libjansson4} // '', qr/^libjansson4( \(>= [\w.~+-]+\))?$/,
	'Depends: libjansson4');
like($dep{'libhiredis0.14'} // '', qr/^libhiredis0\.14( \(>= [\w.~+-]+\))?$/,
	'Depends: libhiredis0.14');
# (a sanitizer build also links the sanitizers' runtimes)
my (undef, $built_dyn) = cmd('readelf', '-d', $built);
my @built_needed = $built_dyn =~ /\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g;
my $san = grep { /^lib(asan|ubsan)\.so/ } @built_needed;
my $libs = join '|', 'libjansson4', 'libhiredis0\.14', 'libc6',
	$san ? ('libasan\d+', 'libubsan\d+') : ();
is(join(' ', sort grep { !/^(nginx-abi-|(?:$libs)$)/ } keys %dep), '',
	'and nothing else but libc6' . ($san ? ' and the sanitizers' : ''));
is($f{Recommends}, 'nginx', 'Recommends: nginx');
is($f{Section}, 'httpd', 'Section: httpd');
like($f{Maintainer}, qr/^[^<>]+ <[^<>@\s]+@[^<>\s]+>$/, 'a Maintainer');
like($f{Description}, qr/^\S.{0,78}\n( \S.*\n| \.\n)+/s,
	'a synopsis and a long description');

# the contents
my $x = "$dir/x";
cmd('dpkg-deb', '-x', $deb, $x);
is(slurp("$x$avail"), "load_module modules/ngx_http_usage_module.so;\n",
	"$avail: the load_module line, relative to nginx's prefix");
my (undef, $readme) = cmd('gzip', '-dc', "$x$doc/README.md.gz");
ok($readme eq slurp("$repo/README.md"), 'the README, gzipped');
my (undef, $changelog) = cmd('gzip', '-dc', "$x$doc/changelog.Debian.gz");
like($changelog, qr/^\Q$pkg ($version)\E \S+; urgency=\w+\n/,
	'changelog.Debian for this version');
like($changelog, qr/^ -- \Q$f{Maintainer}\E  \w{3}, \d\d \w{3} \d{4} /m,
	'signed by the Maintainer');
ok(-s "$x$doc/copyright", 'a copyright file');

# the module, stripped (the unstripped build stays for the tests)
my (undef, $sections) = cmd('readelf', '-S', '-W', "$x$so_path");
my (undef, $orig_sections) = cmd('readelf', '-S', '-W', $built);
like($orig_sections, qr/\.symtab\b/, 'the build has a symbol table');
unlike($sections, qr/\.symtab\b|\.debug_/, 'the packaged module is stripped');
my (undef, $needed) = cmd('readelf', '-d', "$x$so_path");
my @needed = $needed =~ /\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g;
is(join(' ', sort @needed), join(' ', sort @built_needed),
	'it links what the build links');
is(join(' ', grep { /^lib(jansson|hiredis)\./ } sort @needed),
	'libhiredis.so.0.14 libjansson.so.4',
	'libjansson and libhiredis among them (hence the Depends)');

###############################################################################
# the maintainer scripts

my $ctl = "$dir/ctl";
cmd('dpkg-deb', '-e', $deb, $ctl);
my $names = 'mod-http-usage.conf:50-mod-http-usage.conf ';
my $scripts_safe = 1;
for my $s (qw(postinst prerm postrm)) {
	my $text = slurp("$ctl/$s");
	ok(defined $text, "$s") or next;
	is((stat "$ctl/$s")[2] & 07777, 0755, "$s: 0755");
	is((cmd('sh', '-n', "$ctl/$s"))[0], 0, "$s: sh -n");
	# every path it touches under $DPKG_ROOT (else the chrootless
	# install below would act on this machine's /etc)
	my @etc = join("\n", grep { !/^\s*#/ } split /\n/, $text)
		=~ m{(\S*/etc/\S*)}g;
	my @bad = grep { !m{^\$DPKG_ROOT/etc/nginx/modules-enabled/} } @etc;
	is("@bad", '', "$s: every /etc path is under \$DPKG_ROOT") or $scripts_safe = 0;
	SKIP: {
		my $auto = "/usr/share/debhelper/autoscripts/$s-nginx";
		skip "no $auto (nginx-dev)", 1 unless -f $auto;
		my ($section) = $text =~ /^# Start of dh_nginx's section\n(.*)^# End of dh_nginx's section\n/ms;
		(my $want = slurp($auto)) =~ s/#NAMES#/$names/g;
		is(($section // '') =~ s/\$DPKG_ROOT//gr, $want,
			"$s: dh_nginx's $s-nginx (Debian's modules'), plus \$DPKG_ROOT");
	}
}
my $md5 = slurp("$ctl/md5sums") // '';
like($md5, qr{  usr/lib/nginx/modules/ngx_http_usage_module\.so\n},
	'md5sums lists the files');
my ($md5_rc, $md5_out) = cmd_all('sh', '-c', 'cd "$1" && md5sum -c --quiet "$2"',
	'sh', $x, "$ctl/md5sums");
is($md5_rc, 0, 'and they are right') or diag $md5_out;

###############################################################################
# lintian

SKIP: {
	my (undef, $have) = cmd('sh', '-c', 'command -v lintian');
	skip 'lintian not installed (scripts/test.sh installs it)', 2
		unless $have =~ /\S/;
	my ($rc, $out) = cmd_all('lintian', '--fail-on', 'error', $deb);
	is($rc, 0, 'lintian --fail-on error: exit 0') or diag $out;
	is(join("\n", grep { /^E: / } split /\n/, $out), '', 'lintian: no error');
	my @w = grep { /^W: / } split /\n/, $out;
	diag("lintian warnings:\n" . join("\n", @w)) if @w;
}

# scripts/package's lintian gate, with a stand-in lintian
{
	my $bin = "$dir/fake-bin";
	make_path($bin);
	local $ENV{PATH} = "$bin:$ENV{PATH}";
	for my $case (['E: libnginx-mod-http-usage: fake-error', 1, 1],
		['E: libnginx-mod-http-usage: fake-error', 0, 1],
		['W: libnginx-mod-http-usage: fake-warning', 0, 0])
	{
		my ($line, $exit, $fails) = @$case;
		$t0->write_file("$bin/lintian", "#!/bin/sh\necho '$line'\nexit $exit\n");
		chmod 0755, "$bin/lintian";
		my ($c, $o) = build_package(out => "$dir/out-gate", module => $built,
			lintian => 1);
		if ($fails) {
			isnt($c, 0, "scripts/package fails on a lintian error (lintian "
				. "exit $exit)");
		} else {
			is($c, 0, 'scripts/package passes with a lintian warning');
		}
		like($o, qr/^\Q$line\E$/m, 'and prints what lintian said');
	}
}

###############################################################################
# installed with dpkg into a scratch root

sub ls_dir {
	my ($d) = @_;
	opendir my $dh, $d or return '(none)';
	return join ' ', map { -l "$d/$_" ? "$_->" . readlink("$d/$_") : $_ }
		sort grep { !/^\.\.?$/ } readdir $dh;
}
my $sys_enabled = ls_dir('/etc/nginx/modules-enabled');
my (undef, $sys_status) = cmd_all('dpkg-query', '-W', '-f=${Status} ${Version}',
	$pkg);

# the root: an empty dpkg database, and what nginx-common would bring: the
# modules-enabled directory and the prefix's modules -> /usr/lib/nginx/modules
make_path(map { "$root/var/lib/dpkg/$_" } qw(info updates triggers));
make_path("$root/var/log", "$root/etc/nginx/modules-enabled", "$root/usr/share/nginx");
$t0->write_file("$root/var/lib/dpkg/status", '');
symlink(readlink('/usr/share/nginx/modules') // '../../lib/nginx/modules',
	"$root/usr/share/nginx/modules") or die "symlink: $!";

sub dpkg {
	my @argv = ('dpkg', "--root=$root", "--log=$root/var/log/dpkg.log",
		'--force-depends', '--force-script-chrootless',
		($> == 0 ? () : '--force-not-root'), @_);
	return cmd_all(@argv);
}
sub status {
	my (undef, $s) = cmd_all('dpkg-query', "--root=$root", '-W',
		'-f=${Status} ${Version}', $pkg);
	return $s;
}
sub link_of {
	my $l = "$root$enabled";
	return -l $l ? readlink $l : -e $l ? '(a file)' : undef;
}

give_up('the maintainer scripts are not confined to $DPKG_ROOT: not '
	. 'running them') unless $scripts_safe;

($code, $log) = dpkg('-i', $deb);
is($code, 0, 'dpkg --root -i: installed') or diag $log;
is(status(), "install ok installed $version", 'dpkg: installed');
ok(-f "$root$so_path" && -f "$root$avail", 'the module and its conf file');
is(link_of(), $avail, "postinst: $enabled -> $avail");

# the stock nginx loads it through modules-enabled
# (as Debian's nginx.conf: the include before the events block, which the
# harness would otherwise put first)
my $conf = "include $root/etc/nginx/modules-enabled/*.conf;\n"
	. "events { worker_connections 1024; }\n" . api_conf();
symlink("$root$avail", "$root$enabled.tmp") && rename("$root$enabled.tmp", "$root$enabled")
	or die "re-pointing $enabled: $!";
($code, $log) = $t->check_config($conf, no_module => 1);
is($code, 0, 'nginx -t with modules-enabled/*.conf: the module loads')
	or diag $log;
$t->write_config($conf, no_module => 1);
$t->run();
my $r = $t->post_json('/v1/events', { entityId => 'pkg-1', eventType => 'run' });
is($r->status, 201, 'POST /v1/events: 201') or diag $r->describe;
$r = $t->get('/v1/usage/pkg-1');
is($r->status, 200, 'GET /v1/usage/pkg-1: 200');
is($r->data && $r->data->{totalEvents}, 1, 'the event counted');
$r = $t->get("/v1/events?entityId=pkg-1");
is($r->data && scalar @{ $r->data->{events} // [] }, 1, 'and listed');
$r = $t->get('/health');
is($r->json && $r->json->{version}, $upstream,
	"the module is version $upstream, as the package");
$t->stop();
symlink($avail, "$root$enabled.tmp") && rename("$root$enabled.tmp", "$root$enabled")
	or die "restoring $enabled: $!";

# upgrades: the link as the administrator left it
my ($c2, $log2, $deb2) = build_package(out => "$dir/out-2", module => $built,
	revision => 2);
ok($deb2, "a $upstream-2") or diag $log2;
($code, $log) = dpkg('-i', $deb2);
is($code, 0, "upgrade to $upstream-2") or diag $log;
is(status(), "install ok installed $upstream-2", "$upstream-2 installed");
is(link_of(), $avail, 'upgrade: the link stays');
unlink "$root$enabled";
($code, $log) = dpkg('-i', $deb2);
is($code, 0, 'reinstalled over itself (an upgrade for the scripts)') or diag $log;
is(link_of(), undef, 'upgrade: a link the administrator deleted stays deleted');
symlink($avail, "$root$enabled") or die;

# remove: disabled, the module no longer loads
($code, $log) = dpkg('-r', $pkg);
is($code, 0, 'dpkg -r: removed') or diag $log;
is(link_of(), undef, "remove: $enabled is gone");
is(readlink("$root$enabled.removed"), $avail, '(renamed .removed, as Debian does)');
ok(!-e "$root$so_path" && !-e "$root$avail", 'the module and its conf file gone');
($code, $log) = $t->check_config($conf, no_module => 1);
isnt($code, 0, 'nginx -t: the module is no longer loaded');
like($log, qr/unknown directive "usage_zone"/, '(unknown directive "usage_zone")');

# a reinstall after the remove enables it again; purge deletes the link
($code, $log) = dpkg('-i', $deb2);
is($code, 0, 'reinstalled after the remove') or diag $log;
is(link_of(), $avail, 'the link is back');
ok(!-l "$root$enabled.removed", 'and .removed gone');
($code, $log) = dpkg('-P', $pkg);
is($code, 0, 'dpkg -P: purged') or diag $log;
is(ls_dir("$root/etc/nginx/modules-enabled"), '', 'purge: no link left');

# this machine's
is(ls_dir('/etc/nginx/modules-enabled'), $sys_enabled,
	"this machine's /etc/nginx/modules-enabled untouched");
is((cmd_all('dpkg-query', '-W', '-f=${Status} ${Version}', $pkg))[1], $sys_status,
	"and its dpkg database");

$t0->finish();
$t->done_testing();
