package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// dropPrivileges switches a root process to name once its sockets are
// bound, so nothing that parses packets from the internet runs as root.
// Not root: nothing to do (systemd's AmbientCapabilities=CAP_NET_BIND_SERVICE
// or setcap covers binding low ports). An empty name keeps root, on purpose.
func dropPrivileges(name string) error {
	if os.Geteuid() != 0 || name == "" || name == "root" {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("--user %s: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("--user %s: non-numeric uid/gid %s/%s", name, u.Uid, u.Gid)
	}
	// Group first: after setuid we could no longer change it.
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("--user %s: setgroups: %w", name, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("--user %s: setgid: %w", name, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("--user %s: setuid: %w", name, err)
	}
	return nil
}
