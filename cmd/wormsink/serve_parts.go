package main

// The listeners of serve. Each add* binds its sockets in newServer (before
// privileges are dropped) and appends a part that serves them.

func (s *server) addDNS() error     { return nil }
func (s *server) addTFTP() error    { return nil }
func (s *server) addCapture() error { return nil }
