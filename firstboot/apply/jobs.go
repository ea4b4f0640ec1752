package apply

// busVerbs are the systemctl verbs activate uses; each is one method of
// systemd's D-Bus API (StartUnit, StopUnit, RestartUnit, TryRestartUnit,
// ReloadOrTryRestartUnit) in job mode "replace", as systemctl calls it.
var busVerbs = map[string]bool{
	"start": true, "stop": true, "restart": true, "try-restart": true, "try-reload-or-restart": true,
}

// busJob parses `systemctl --no-ask-password --no-block VERB UNIT...`, the
// only form activate runs: a job queued without waiting for it. Anything
// else (another verb, waiting for the job) is not for the bus path.
func busJob(args []string) (verb string, units []string, ok bool) {
	if len(args) < 4 || args[0] != "--no-ask-password" || args[1] != "--no-block" || !busVerbs[args[2]] {
		return "", nil, false
	}
	for _, u := range args[3:] {
		if u == "" || u[0] == '-' {
			return "", nil, false
		}
	}
	return args[2], args[3:], true
}
