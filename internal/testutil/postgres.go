package testutil

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// Postgres is a PostgreSQL cluster of a test binary's own: initdb in a
// temporary directory, the server on a free loopback port, trust
// authentication for the one user "wormsink", nothing written to disk
// durably (fsync off). It runs as the "postgres" user when the tests run
// as root (the server refuses to run as root).
type Postgres struct {
	Port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
	mu   sync.Mutex
	dbs  int
}

// StartPostgres initialises and starts a cluster and waits until it takes
// connections.
func StartPostgres() (*Postgres, error) {
	bin, err := postgresBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "wormsink-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{dir: dir, done: make(chan struct{}), log: filepath.Join(dir, "server.log")}
	cred, err := postgresCredential()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "wormsink", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, lastLines(string(out), 5))
	}
	for attempt := 0; ; attempt++ {
		port, err := freeTCPPort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		p.Port = port
		if err = p.start(bin, data, cred); err == nil {
			return p, nil
		}
		if attempt == 3 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

func (p *Postgres) start(bin, data string, cred *syscall.Credential) error {
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o666)
	if err != nil {
		return err
	}
	if cred != nil {
		os.Chown(p.log, int(cred.Uid), int(cred.Gid))
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses=127.0.0.1", "-p", strconv.Itoa(p.Port),
		"-c", "unix_socket_directories="+p.dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=64MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary that dies does not leave its server behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("postgres: %w", err)
	}
	logf.Close()
	p.cmd = cmd
	p.done = make(chan struct{})
	go func() { cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		db, err := sql.Open("pgx", p.url("postgres"))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err = db.PingContext(ctx)
			cancel()
			db.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			return fmt.Errorf("postgres exited at start: %s", lastLines(string(b), 5))
		default:
		}
		if time.Now().After(deadline) {
			p.Stop()
			return fmt.Errorf("postgres did not take connections in 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *Postgres) url(db string) string {
	return fmt.Sprintf("postgres://wormsink@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// NewDatabase creates an empty database in the cluster and returns its URL.
func (p *Postgres) NewDatabase() (string, error) {
	p.mu.Lock()
	p.dbs++
	name := fmt.Sprintf("t%d", p.dbs)
	p.mu.Unlock()
	db, err := sql.Open("pgx", p.url("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return p.url(name), nil
}

// Restart stops the server (fast shutdown) and starts it again on the same
// port and data, for tests of what survives a database restart.
func (p *Postgres) Restart() error {
	bin, err := postgresBin()
	if err != nil {
		return err
	}
	cred, err := postgresCredential()
	if err != nil {
		return err
	}
	p.Stop()
	return p.start(bin, filepath.Join(p.dir, "data"), cred)
}

// Stop shuts the server down (fast shutdown: open sessions are ended).
func (p *Postgres) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Close stops the server and removes its files.
func (p *Postgres) Close() {
	p.Stop()
	os.RemoveAll(p.dir)
}

// postgresBin is the newest /usr/lib/postgresql/N/bin that has initdb.
func postgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run `make deps` (scripts/deps.sh)")
}

// postgresCredential is who the server runs as: the postgres user when we
// are root, ourselves otherwise.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and neither a postgres nor a nobody user exists to run PostgreSQL as")
}

func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
