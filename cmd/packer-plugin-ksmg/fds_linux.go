package main

import (
	"math"

	"golang.org/x/sys/unix"
)

// keepInheritedFDsFromChildren marks every descriptor above stderr
// close-on-exec. Packer starts its plugins with descriptors that are not
// (3, 4, 5 and 251 were seen with Packer 1.9.5), so every tool the build
// runs would inherit them and open its own at 10 and above; mmdebstrap
// then has apt run `cat >&10`, which dash refuses ("Bad fd number"). The
// plugin itself keeps them; only children do not get them.
func keepInheritedFDsFromChildren() error {
	return unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
}
