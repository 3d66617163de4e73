// Package sinkhole is the fake TFTP server and the transparent interceptor: they
// refuse the files worms fetch, never serving a byte, and record who asked.
package sinkhole
