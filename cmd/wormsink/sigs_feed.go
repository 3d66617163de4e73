package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"wormsink/signatures"
	"wormsink/signatures/feed"
)

// The publishing side of the signature feed (keygen, sign) and its checks
// (verify, pull). Formats are minisign's, so the minisign tool and these
// commands verify each other's work.

func runSigsKeygen(e env, args []string) int {
	fs := newFlags(e, "sigs keygen", "-o PREFIX")
	prefix := fs.String("o", "", "write the public key to PREFIX.pub and the secret key to PREFIX.key (mode 0600)")
	pwFile := fs.String("password-file", "", "encrypt the secret key with the password in this file's first line (- reads standard input); default: unencrypted, as minisign -G -W")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if *prefix == "" || fs.NArg() != 0 {
		return usageErr(e, "sigs keygen: needs -o PREFIX and no arguments")
	}
	pub, sec, err := feed.GenerateKey()
	if err != nil {
		return fail(e, "sigs keygen: %v", err)
	}
	if *pwFile != "" {
		pw, err := readPassword(e, *pwFile)
		if err != nil {
			return fail(e, "sigs keygen: %v", err)
		}
		k, err := feed.ParsePrivateKey(sec, nil)
		if err != nil {
			return fail(e, "sigs keygen: %v", err)
		}
		if sec, err = feed.EncryptKey(pw, k); err != nil {
			return fail(e, "sigs keygen: %v", err)
		}
	}
	// O_EXCL: a second keygen must never replace a key a feed is signed with.
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{*prefix + ".key", sec, 0o600}, {*prefix + ".pub", pub, 0o644}} {
		f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, w.mode)
		if err != nil {
			return fail(e, "sigs keygen: %v", err)
		}
		if _, err := f.Write(w.data); err != nil {
			f.Close()
			return fail(e, "sigs keygen: %v", err)
		}
		if err := f.Close(); err != nil {
			return fail(e, "sigs keygen: %v", err)
		}
	}
	pk, _ := feed.ParsePublicKey(pub)
	fmt.Fprintf(e.stdout, "key %s: public key %s.pub, secret key %s.key\nserve --sigs-pubkey %s\n", feed.KeyID(pk.ID()), *prefix, *prefix, pk.String())
	return exitOK
}

// readPassword reads a password from a file's first line, or from standard
// input for "-": never from the command line, where ps and shell history
// would show it.
func readPassword(e env, file string) (string, error) {
	var r io.Reader
	if file == "-" {
		r = e.stdin
	} else {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		defer f.Close()
		r = f
	}
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("--password-file: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("--password-file: empty password")
	}
	return line, nil
}

func loadSecretKey(e env, keyFile, pwFile string) (feed.PrivateKey, error) {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return feed.PrivateKey{}, err
	}
	var ask func() (string, error)
	if pwFile != "" {
		ask = func() (string, error) { return readPassword(e, pwFile) }
	}
	k, err := feed.ParsePrivateKey(data, ask)
	if err != nil {
		return k, fmt.Errorf("%s: %w", keyFile, err)
	}
	return k, nil
}

func runSigsSign(e env, args []string) int {
	fs := newFlags(e, "sigs sign", "--key FILE SIGFILE")
	keyFile := fs.String("key", "", "minisign secret key file (from sigs keygen or minisign -G)")
	pwFile := fs.String("password-file", "", "for an encrypted key: file whose first line is its password (- reads standard input)")
	expFlag := fs.String("expires", "", "for a file without expires: the expiry to sign, RFC 3339 or a duration from now (168h)")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if *keyFile == "" || fs.NArg() != 1 {
		return usageErr(e, "sigs sign: needs --key FILE and one SIGFILE")
	}
	var expires time.Time
	if *expFlag != "" {
		if d, err := time.ParseDuration(*expFlag); err == nil && d > 0 {
			expires = time.Now().Add(d).Truncate(time.Second)
		} else if t, err := time.Parse(time.RFC3339, *expFlag); err == nil {
			expires = t
		} else {
			return usageErr(e, "sigs sign: --expires %q: want an RFC 3339 time or a positive duration", *expFlag)
		}
	}
	file := fs.Arg(0)
	data, err := os.ReadFile(file)
	if err != nil {
		return fail(e, "sigs sign: %v", err)
	}
	set, err := signatures.Parse(file, data)
	if err != nil {
		return fail(e, "sigs sign: %v", err)
	}
	switch {
	case set.Expires().IsZero() && expires.IsZero():
		return fail(e, "sigs sign: %s has no expires: and no --expires was given: a feed file must expire, or a stale copy could be replayed forever", file)
	case expires.IsZero():
		expires = set.Expires()
	case !set.Expires().IsZero() && !set.Expires().Equal(expires):
		return fail(e, "sigs sign: --expires %s disagrees with the file's expires: %s", expires.Format(time.RFC3339), set.Expires().Format(time.RFC3339))
	}
	if !time.Now().Before(expires) {
		return fail(e, "sigs sign: %s would be expired (%s): set a later expiry", file, expires.Format(time.RFC3339))
	}
	key, err := loadSecretKey(e, *keyFile, *pwFile)
	if err != nil {
		return fail(e, "sigs sign: %v", err)
	}
	c := feed.Comment{Serial: set.Serial(), Expires: expires, File: filepath.Base(file)}
	sig, err := feed.Sign(key, data, c.String())
	if err != nil {
		return fail(e, "sigs sign: %v", err)
	}
	if err := os.WriteFile(file+".minisig", sig, 0o644); err != nil {
		return fail(e, "sigs sign: %v", err)
	}
	fmt.Fprintf(e.stdout, "%s.minisig: signed by key %s, trusted comment %q\n", file, feed.KeyID(key.ID()), c.String())
	return exitOK
}

func runSigsVerify(e env, args []string) int {
	fs := newFlags(e, "sigs verify", "--pubkey KEY SIGFILE")
	var keys commaList
	fs.Var(&keys, "pubkey", "trusted public key: base64 (RW…) or a .pub file; repeatable")
	sigPath := fs.String("sig", "", "the signature (default SIGFILE.minisig)")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if len(keys) == 0 || fs.NArg() != 1 {
		return usageErr(e, "sigs verify: needs --pubkey KEY and one SIGFILE")
	}
	file := fs.Arg(0)
	if *sigPath == "" {
		*sigPath = file + ".minisig"
	}
	var pks []feed.PublicKey
	for _, k := range keys {
		pk, err := feed.LoadPublicKey(k)
		if err != nil {
			return usageErr(e, "sigs verify: --pubkey: %v", err)
		}
		pks = append(pks, pk)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fail(e, "sigs verify: %v", err)
	}
	sig, err := os.ReadFile(*sigPath)
	if err != nil {
		return fail(e, "sigs verify: %v", err)
	}
	v, err := feed.Verify(pks, data, sig)
	if err != nil {
		return fail(e, "sigs verify: %s: %v", file, err)
	}
	if _, cerr := feed.ParseComment(v.TrustedComment); cerr != nil {
		// A good signature all the same (minisign's default comment, say):
		// say so, and that a feed would not take it.
		fmt.Fprintf(e.stdout, "%s: signature ok (key %s); trusted comment %q is not the feed's \"serial:N expires:RFC3339 file:NAME\": serve --sigs-url would refuse it\n",
			file, feed.KeyID(v.KeyID), v.TrustedComment)
		return exitOK
	}
	rel, err := feed.Open(pks, filepath.Base(file), data, sig, time.Now(), 0)
	if err != nil {
		return fail(e, "sigs verify: %v", err)
	}
	fmt.Fprintf(e.stdout, "%s: ok: signed by key %s, serial %d, %s\n", file, feed.KeyID(rel.KeyID), rel.Comment.Serial, expiryText(rel.Comment.Expires, time.Now()))
	return exitOK
}

func runSigsPull(ctx context.Context, e env, args []string) int {
	fs := newFlags(e, "sigs pull", "--sigs-url URL --sigs-pubkey KEY --signatures FILE")
	var c sigsFeedConfig
	sigsFeedFlags(fs, &c)
	path := fs.String("signatures", "", "the last-good copy: replaced when the feed has a newer, good file")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if len(c.urls) == 0 || fs.NArg() != 0 {
		return usageErr(e, "sigs pull: needs --sigs-url URL, --sigs-pubkey KEY, --signatures FILE and no arguments")
	}
	cfg, err := sigsFeedSetup(c.urls, c.pubkeys, c.ca, *path, c.interval, int64(c.maxSize))
	if err != nil {
		return usageErr(e, "sigs pull: %v", err)
	}
	f, err := feed.New(cfg) // no Store: the file at --signatures is the one in service
	if err != nil {
		return fail(e, "sigs pull: %v", err)
	}
	res, err := f.Check(ctx)
	if err != nil {
		reason, _ := feed.ReasonOf(err)
		return fail(e, "sigs pull: %s: %v", reason, err)
	}
	switch {
	case res.Applied:
		fmt.Fprintf(e.stdout, "%s: updated to serial %d from %s\n", *path, res.Serial, res.URL)
	default:
		fmt.Fprintf(e.stdout, "%s: unchanged at serial %d (%s)\n", *path, res.Serial, res.URL)
	}
	return exitOK
}
