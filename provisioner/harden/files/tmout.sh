# ksmg appliance (provisioner/harden): interactive shells end after 10
# minutes without input; files are private by default. bash reads the
# TMOUT line, other shells skip it.
umask 027
if [ -n "${BASH_VERSION:-}" ]; then
	declare -xr TMOUT=600
fi
