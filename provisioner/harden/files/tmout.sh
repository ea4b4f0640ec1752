# ksmg appliance (provisioner/harden): interactive shells end after 10
# minutes without input (bash; read-only and exported), files are private
# by default, no core files.
umask 027
ulimit -c 0 2>/dev/null
if [ -n "${BASH_VERSION:-}" ]; then
	declare -xr TMOUT=600
fi
