//go:build !linux

package attribution

import "net"

// listenRADIUS binds a UDP socket to listen.
func listenRADIUS(listen string) (radiusSocket, error) {
	c, err := net.ListenPacket("udp", listen)
	if err != nil {
		return nil, err
	}
	return newPacketSocket(c), nil
}
