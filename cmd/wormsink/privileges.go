package main

import (
	"errors"
	"fmt"
	"net"
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

// privilegeHint adds to a failed bind what is missing: the kernel says
// only "permission denied". Binding a port below
// net.ipv4.ip_unprivileged_port_start (1024) needs CAP_NET_BIND_SERVICE.
func privilegeHint(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "listen" && errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%w (a port below 1024 needs root or CAP_NET_BIND_SERVICE: run as root, as the systemd unit does with AmbientCapabilities=CAP_NET_BIND_SERVICE, or `setcap cap_net_bind_service=+ep` the binary, or use a port from 1024 up)", err)
	}
	return err
}

// captureHint explains why a capture could not start: an interface that
// does not exist, or a socket the kernel refused (AF_PACKET needs
// CAP_NET_RAW), instead of "socket 0: operation not permitted" for both.
func captureHint(iface string, err error) error {
	if _, ierr := net.InterfaceByName(iface); ierr != nil {
		return fmt.Errorf("%s: no such interface", iface)
	}
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%w (capture needs CAP_NET_RAW: run as root, or with AmbientCapabilities=CAP_NET_RAW in the unit, or `setcap cap_net_raw,cap_net_bind_service=+ep` the binary)", err)
	}
	return err
}
