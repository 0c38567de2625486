#!/bin/sh
# fakesmtp versus Postfix's smtp-sink, both driven by smtp-source (issue 8,
# figure 1). Builds bin/onecopy and the bare-library reference, then runs
# bench/sinkbench; extra arguments go to it (e.g. -only headline -rounds 11).
# Skips, with a message and exit 0, when Postfix's tools are not installed:
#   printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
#   echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
#   apt-get install -y postfix      # the daemon is not started
set -eu
GO=${GO:-go}
for tool in smtp-sink smtp-source; do
	if [ ! -x "/usr/sbin/$tool" ]; then
		echo "bench/smtpsink.sh: /usr/sbin/$tool not found: skipping the smtp-sink comparison (install Debian's postfix package without starting it; see this script's header)"
		exit 0
	fi
done
mkdir -p bin
$GO build -o bin/onecopy ./cmd/onecopy
$GO build -o bin/baresmtpd ./bench/baresmtpd
$GO build -o bin/sinkbench ./bench/sinkbench
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), $($GO version | cut -d' ' -f3), postfix $(dpkg-query -W -f='${Version}' postfix 2>/dev/null || echo '?')"
exec bin/sinkbench -onecopy bin/onecopy -bare bin/baresmtpd "$@"
