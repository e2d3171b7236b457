#!/usr/bin/perl

# The Dockerfile, read (there is no Docker engine here; t/docker_runtime.t
# runs its runtime stage as far as a machine without one can): a build stage
# and a runtime stage on the same Debian release; the build stage builds
# the module's Debian package with scripts/package (which builds with
# scripts/build.sh) and runs only scripts the README and CI use, all of
# which exist; the runtime stage installs the nginx version the module was
# built for and, in the same apt-get, that package, which puts the module
# where the production configuration loads it from (t/package.t checks
# the package) and enables it (no .so copied by hand), checks nginx -v,
# copies that configuration where CMD reads it,
# creates the configuration's directories and gives the writable ones to
# its non-root USER, checks the configuration as that user, EXPOSEs the
# port it listens on, has a HEALTHCHECK on /health of that port, STOPSIGNAL
# SIGQUIT and CMD nginx -g 'daemon off;'; .dockerignore keeps build output
# and git out of the context.  Then the linter (scripts/lint-docker:
# hadolint, or dockerfilelint + shellcheck) finds nothing, and does find
# the faults of a bad Dockerfile; skipped when no linter is installed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::UsageProd qw(dockerfile runtime_stage instr_args json_array
	prod_dirs);
use File::Temp qw(tempdir);

my $root = $Test::UsageProd::REPO;

sub slurp {
	my ($path) = @_;
	open my $fh, '<', $path or return '';
	local $/;
	return scalar <$fh>;
}

ok(-f "$root/Dockerfile", 'Dockerfile at the top level');
my $df = dockerfile();
my @stages = @{ $df->{stages} };
is(scalar @stages, 2, 'two stages');
my ($build, $run) = @stages;
like($build->{from}, qr/^debian:bookworm(-slim)?\s+AS\s+build$/i,
	'build stage from Debian bookworm');
like($run->{from}, qr/^debian:bookworm-slim(\s+AS\s+\S+)?$/i,
	'runtime stage from debian:bookworm-slim');
my ($b_img) = $build->{from} =~ /^(\S+)/;
my ($r_img) = $run->{from} =~ /^(\S+)/;
is($b_img, $r_img, 'the same image (and apt sources) in both stages');

###############################################################################
# scripts: only those of the README and CI, and they exist

my $readme = slurp("$root/README.md");
my $ci = slurp("$root/.ci/run");
my %allowed = map { $_ => 1 } "$readme\n$ci" =~ m{\bscripts/([\w.-]+)}g;
# and the scripts those call
for my $s (keys %allowed) {
	$allowed{$_} = 1 for slurp("$root/scripts/$s") =~ m{\bscripts/([\w.-]+)}g;
}

my @run_cmds = map { instr_args($_, 'RUN') } @stages;
my @called = map { m{\bscripts/([\w.-]+)}g } @run_cmds;
# the sources of COPY from the context (all but the destination)
my @copied = map { my @w = split ' '; pop @w; @w }
	grep { !/^--from=/ } map { instr_args($_, 'COPY') } @stages;
ok(scalar(grep { $_ eq 'package' } @called),
	'the build stage runs scripts/package') or diag "RUN: @run_cmds";
like(slurp("$root/scripts/package"), qr{^\s*"\$root/scripts/build\.sh"$}m,
	'which builds with scripts/build.sh');
for my $s (sort { $a cmp $b } keys %{ { map { $_ => 1 } @called } }) {
	ok(-x "$root/scripts/$s", "scripts/$s exists and is executable");
	ok($allowed{$s}, "scripts/$s is one the README or CI uses");
}
for my $f (@copied) {
	ok(-e "$root/$f", "COPY $f: exists") unless $f eq '.';
}
my @build_runs = instr_args($build, 'RUN');
ok(!grep({ /apt-get|make|gcc|configure/ } @build_runs),
	'the build stage builds only through the scripts (no own apt-get, make)');
ok(scalar(grep { /RUN_TESTS.*scripts\/test\.sh/ } @build_runs),
	'the test suite on demand (RUN_TESTS) with scripts/test.sh');

###############################################################################
# the runtime stage

my @r_runs = instr_args($run, 'RUN');
my $r_run = join "\n", @r_runs;
my $conf = slurp("$root/conf/nginx.prod.conf");

like($r_run, qr/apt-get install [^;&]*--no-install-recommends[^;&]*"nginx=\$v"/,
	'nginx installed at a pinned version');
like($r_run, qr/v="\$\(cat [^)]*nginx\.deb-version\)"/,
	'the version the build stage wrote');
like(join("\n", @build_runs),
	qr/dpkg-query -W -f='\$\{Version\}\\n' nginx > build\/nginx\.deb-version/,
	'which is the nginx the module was built against');
like($r_run, qr/test "\$\(nginx -v 2>&1\)" = "\$\(cat [^)]*nginx\.version\)"/,
	'nginx -v checked against the build stage\'s');
like($r_run, qr{rm -rf /var/lib/apt/lists/\*}, 'apt lists removed');

# the module's package, from the build stage, installed with that nginx
my ($deb_from, $deb_to) = map { /--from=build\s+(\S+)\s+(\S+)$/ }
	grep { /\.deb\b/ } instr_args($run, 'COPY');
like($deb_from // '', qr{^/src/build/package/libnginx-mod-http-usage_\*\.deb$},
	'the package from the build stage (scripts/package\'s output)');
my $deb = ($deb_to // '') =~ m{/$} ? $deb_to . ($deb_from =~ s{.*/}{}r)
	: $deb_to // '';
my ($install) = $r_run =~ /(apt-get install [^;&]*)/;
like($install // '', qr{"nginx=\$v"}, 'one apt-get install: the pinned nginx');
like($install // '', qr{\s\Q$deb\E(\s|$)}, "and the package ($deb)");
like($r_run, qr{\brm -rf [^;]*\Q$deb\E(\s|;|$)}, 'the .deb removed after it');
like($r_run, qr{test -L /etc/nginx/modules-enabled/50-mod-http-usage\.conf},
	'its postinst enabled the module, as on a server (checked)');
is(scalar(grep { /\.so\b/ } instr_args($run, 'COPY')), 0,
	'no module copied by hand');
my ($load) = $conf =~ /^load_module (\S+);/m;
is($load, '/usr/lib/nginx/modules/ngx_http_usage_module.so',
	'the configuration loads the module where the package installs it');

my @users = instr_args($run, 'USER');
ok(@users, 'USER set');
my $user = $users[-1] // 'root';
unlike($user, qr/^(root|0)(:|$)/, "runs as a non-root user ($user)");
like($r_run, qr/useradd [^;]*--uid 10001\b/, 'the user exists (uid 10001)')
	if $user =~ /^10001\b/;

my %dirs = prod_dirs();
for my $d (sort keys %dirs) {
	(my $path = $d) =~ s{/$}{};
	ok($conf =~ /\Q$d\E/, "the configuration uses $path");
	like($r_run, qr/mkdir -p [^;]*\Q$path\E(\s|;)/, "$path created");
	if ($d =~ m{^/(run|var)/}) {
		like($r_run, qr/chown usage:usage [^;]*\Q$path\E(\s|;|$)/,
			"$path writable by the user");
	}
}
unlike($r_run, qr{chown [^;\n]*/etc/nginx-usage}, 'the configuration is not');

my @cmd = json_array((instr_args($run, 'CMD'))[-1] // '');
is($cmd[0], 'nginx', 'CMD runs nginx (exec form)');
my %cmd_opt = @cmd[1 .. $#cmd];
is($cmd_opt{'-g'}, 'daemon off;', "CMD: -g 'daemon off;'");
my $conf_path = $cmd_opt{'-c'} // '';
my ($conf_copy) = grep { m{^conf/nginx\.prod\.conf\s+\Q$conf_path\E$} }
	instr_args($run, 'COPY');
ok($conf_copy, "the production configuration is $conf_path");
ok(grep({ m{^nginx -t -q -c \Q$conf_path\E(\s|$)} } @r_runs),
	'nginx -t on it at build time (loads the module into this nginx)');
my $after_user = 0;
for my $i (@{ $run->{instr} }) {
	$after_user = 1 if $i->[0] eq 'USER';
	last if $i->[0] eq 'RUN' && $i->[1] =~ /^nginx -t/;
}
ok($after_user, 'as the runtime user');

my ($expose) = instr_args($run, 'EXPOSE');
is($expose, '8080', 'EXPOSE 8080');
like($conf, qr/^\s*listen 8080;/m, 'the configuration listens on 8080');

my ($hc) = instr_args($run, 'HEALTHCHECK');
ok($hc, 'HEALTHCHECK');
my ($hc_cmd) = ($hc // '') =~ /\bCMD\s+(\[.*\])\s*$/;
my @hc = json_array($hc_cmd // '');
ok(grep({ m{^http://127\.0\.0\.1:8080/health$} } @hc),
	'on /health of the exposed port') or diag "HEALTHCHECK $hc";
ok(grep({ $_ eq 'curl' } @hc) && $r_run =~ /\bcurl\b/,
	'with curl, which the image installs');
like($hc // '', qr/--interval=\d+s/, 'an interval');
like($hc // '', qr/--timeout=\d+s/, 'a timeout');

is((instr_args($run, 'STOPSIGNAL'))[-1], 'SIGQUIT', 'STOPSIGNAL SIGQUIT');

my $ignore = slurp("$root/.dockerignore");
like($ignore, qr{^build/?$}m, '.dockerignore: build/');
like($ignore, qr{^\.git$}m, '.dockerignore: .git');

###############################################################################
# the linter

SKIP: {
	my $avail = system("$root/scripts/lint-docker", '--available') == 0;
	skip 'no Dockerfile linter installed (scripts/test.sh installs one with '
		. 'scripts/lint-docker --install: hadolint if on PATH, else '
		. 'dockerfilelint from npm + shellcheck; it needs npm)', 3
		unless $avail;

	my $out = `"$root/scripts/lint-docker" 2>&1`;
	my $code = $? >> 8;
	is($code, 0, 'scripts/lint-docker: no findings') or diag $out;
	note($out);

	my $dir = tempdir('usage-lint-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
	open my $fh, '>', "$dir/Dockerfile" or die;
	print $fh "FROM debian:bookworm-slim\n",
		"RUN cd /tmp; rm -rf \$TARGET/*\n",
		"HEALTHCHECK --interval=30 CMD curl -f localhost\n",
		"FROBNICATE now\n";
	close $fh;
	$out = `"$root/scripts/lint-docker" "$dir/Dockerfile" 2>&1`;
	$code = $? >> 8;
	is($code, 1, 'a bad Dockerfile: findings (exit 1)');
	like($out, qr/FROBNICATE|invalid|unknown|DL\d+|SC\d+/i,
		'which it names') or diag $out;
}

done_testing();
