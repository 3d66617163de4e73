package main

import (
	"context"
	"fmt"
	"net/url"

	"github.com/rs/zerolog"

	"wormsink/ship"
)

// runShip sends evidence logs to the desk as they grow.
func runShip(ctx context.Context, e env, args []string) int {
	fs := newFlags(e, "ship", "LOG...")
	to := fs.String("to", "", "the desk's URL, https://HOST:PORT (http:// only to a loopback desk)")
	tokenFile := fs.String("token-file", "", "file holding the desk API token (desk token add NAME --role sensor)")
	state := fs.String("state", "", "file keeping each log's shipped offset (default: .LOG.ship beside the first log)")
	sensor := fs.String("sensor", "", "name of these logs at the desk, beside the token's name (default: the token's name only)")
	if code, done := parseFlags(fs, e, reorderFlags(fs, args)); done {
		return code
	}
	if fs.NArg() == 0 {
		return usageErr(e, "ship: needs at least one LOG")
	}
	if err := checkDeskURL(*to); err != nil {
		return usageErr(e, "ship: --to: %v", err)
	}
	if *tokenFile == "" {
		return usageErr(e, "ship: needs --token-file")
	}
	tok, err := readSecretFile(*tokenFile)
	if err != nil {
		return fail(e, "ship: --token-file: %v", err)
	}
	if *state == "" {
		*state = ship.DefaultState(fs.Arg(0))
	}
	sh, err := ship.New(ship.Config{To: *to, Token: tok, Sensor: *sensor, Logs: fs.Args(), State: *state,
		Log: zerolog.New(e.stderr).With().Timestamp().Logger()})
	if err != nil {
		return fail(e, "%v", err)
	}
	if err := sh.Serve(ctx); err != nil {
		return fail(e, "%v", err)
	}
	return exitOK
}

// checkDeskURL allows https anywhere and http to a loopback desk only:
// tokens and evidence do not cross a network in the clear.
func checkDeskURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q: want https://HOST:PORT", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if loopbackListen(u.Host) {
			return nil
		}
		return fmt.Errorf("%q: plain http only to a loopback desk; use https", s)
	}
	return fmt.Errorf("%q: want https://HOST:PORT", s)
}
