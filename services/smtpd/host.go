package smtpd

import "os"

var osHostname = os.Hostname
