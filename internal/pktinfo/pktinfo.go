// Package pktinfo reads and writes the socket control messages that carry a
// datagram's addresses, for the DNS shim, the TFTP sinkhole and the interceptor.
package pktinfo

// IP_PKTINFO and IPV6_PKTINFO tell a socket bound to a wildcard address
// which address a datagram was sent to, and make the reply leave from it
// (a client drops an answer from another address); IP_ORIGDSTADDR and
// IPV6_ORIGDSTADDR tell the interceptor where a datagram a tproxy rule
// steered was going. Nothing here allocates: it runs per datagram.
