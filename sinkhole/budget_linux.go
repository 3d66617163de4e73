package sinkhole

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// fdLimit is the soft limit on open files (Go raises it to the hard limit
// at start).
func fdLimit() (int, bool) {
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) != nil || rl.Cur == 0 || rl.Cur > 1<<30 {
		return 0, false
	}
	return int(rl.Cur), true
}

// ephemeralRange is the range the kernel picks fresh ports from.
func ephemeralRange() (lo, hi int, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo <= 0 || hi < lo || hi > 65535 {
		return 0, 0, false
	}
	return lo, hi, true
}
