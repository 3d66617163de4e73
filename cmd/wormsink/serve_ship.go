package main

import (
	"errors"
	"flag"
	"fmt"

	"wormsink/ship"
)

// Shipping: serve sends its own evidence log to the desk with the code of
// wormsink ship. It reads the log file as written, so a slow or absent desk
// never slows the sensor: the log is the spool.
type shipConfig struct {
	to        string
	tokenFile string
	token     string // read by complete
}

func shipFlags(fs *flag.FlagSet, c *shipConfig) {
	fs.StringVar(&c.to, "ship-to", "", "the desk's URL, https://HOST:PORT (http:// only to a loopback desk): --log is shipped to it as it grows (default off)")
	fs.StringVar(&c.tokenFile, "ship-token-file", "", "file holding the desk API token for --ship-to")
}

func (c *serveConfig) completeShip() error {
	sc := &c.ship
	if sc.to == "" {
		if sc.tokenFile != "" {
			return errors.New("--ship-token-file needs --ship-to")
		}
		return nil
	}
	if err := checkDeskURL(sc.to); err != nil {
		return fmt.Errorf("--ship-to: %w", err)
	}
	if c.logFile == "-" || c.logFile == "" {
		return errors.New("--ship-to needs --log FILE: the log file is what is shipped")
	}
	if sc.tokenFile == "" {
		return errors.New("--ship-to needs --ship-token-file")
	}
	tok, err := readSecretFile(sc.tokenFile)
	if err != nil {
		return fmt.Errorf("--ship-token-file: %w", err)
	}
	sc.token = tok
	return nil
}

// addShip appends the shipper.
func (s *server) addShip() error {
	c := &s.cfg.ship
	if c.to == "" {
		return nil
	}
	sh, err := ship.New(ship.Config{To: c.to, Token: c.token, Logs: []string{s.cfg.logFile}, State: ship.DefaultState(s.cfg.logFile), Log: s.log})
	if err != nil {
		return err
	}
	s.add("ship", newLoop(sh.Serve))
	return nil
}
