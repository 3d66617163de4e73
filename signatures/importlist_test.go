package signatures

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

const hostsList = `# a blocking list
127.0.0.1 localhost
::1 localhost ip6-localhost
0.0.0.0 0.0.0.0
0.0.0.0 Bad.Example  worse.example # trailing comment
0.0.0.0 10.1.2.3
plain.example
0.0.0.0 bad.example
`

const rpzZone = `$TTL 300
$ORIGIN rpz.local.
@ SOA ns.rpz.local. hostmaster.rpz.local. 1 3600 600 86400 300
@ NS ns.rpz.local.
nx.example CNAME .
*.wild.example CNAME .
nodata.example CNAME *.
local.example A 192.0.2.1
pass.example CNAME rpz-passthru.
32.1.2.0.192.rpz-ip CNAME .
garden.example CNAME walled.garden.example.
`

const urlhausCSV = `################################################################
# abuse.ch URLhaus Database Dump (CSV)                         #
################################################################
# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter
"1","2026-12-01 00:00:00","http://Mal.Example/bins/x86","online","2026-12-01 00:00:00","malware_download","elf,mirai","https://urlhaus.abuse.ch/url/1/","r"
"2","2026-12-01 00:00:00","http://192.0.2.7:8080/i","online","","malware_download","","https://urlhaus.abuse.ch/url/2/","r"
"3","2026-12-01 00:00:00","https://cdn.mal.example/a.sh","offline","","malware_download","","https://urlhaus.abuse.ch/url/3/","r"
"4","2026-12-01 00:00:00","http://mal.example/other","online","","malware_download","","https://urlhaus.abuse.ch/url/4/","r"
`

func TestImport(t *testing.T) {
	for _, tc := range []struct {
		format, in string
		want       []string
		skipped    int
	}{
		{"hosts", hostsList, []string{"bad.example sinkhole", "worse.example sinkhole", "plain.example sinkhole"}, 1},
		{"rpz", rpzZone, []string{"nx.example nxdomain", "*.wild.example nxdomain", "nodata.example nodata", "local.example sinkhole", "garden.example sinkhole"}, 2},
		{"urlhaus-csv", urlhausCSV, []string{"mal.example sinkhole", "cdn.mal.example sinkhole"}, 1},
	} {
		t.Run(tc.format, func(t *testing.T) {
			im, err := Import("list", strings.NewReader(tc.in), tc.format)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range im.Domains {
				got = append(got, d.Pattern()+" "+d.Action.String())
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || im.Skipped != tc.skipped {
				t.Fatalf("got %v skipped %d, want %v skipped %d", got, im.Skipped, tc.want, tc.skipped)
			}
			// What is written parses as signature entries, with the same names.
			var b bytes.Buffer
			if err := WriteImported(&b, im, ImportOptions{ID: "imp", Family: `Fam "x"`, Evidence: Weak, Source: "list", Format: tc.format}); err != nil {
				t.Fatal(err)
			}
			set, err := Parse("out", []byte("serial: 1\nsignatures:\n"+b.String()))
			if err != nil {
				t.Fatalf("%v\n%s", err, b.String())
			}
			if set.Stats().Domains != len(tc.want) || set.Signatures()[0].Family != `Fam "x"` {
				t.Fatalf("%+v", set.Stats())
			}
			for _, d := range set.Signatures()[0].Domains {
				if d.Evidence != Weak {
					t.Fatalf("%s: evidence %v", d.Name, d.Evidence)
				}
			}
		})
	}
}

func TestImportErrors(t *testing.T) {
	for _, tc := range []struct{ format, in, want string }{
		{"hosts", "0.0.0.0 ok.example\n0.0.0.0 bad!name\n", "list:2: "},
		{"hosts", "ok.example\nnot-an-address two.example\n", "list:2: "},
		{"rpz", "x.example CNAME .\n", "list:1: "},
		{"rpz", "$TTL 300\n@ SOA a. b. 1 2 3 4 5\nbad CNAME\n", "list:3: "},
		{"urlhaus-csv", "\"1\",\"d\",\"http://ok.example/\"\n\"2\",\"d\",\"::not a url\"\n", "list:2: "},
		{"urlhaus-csv", "\"1\",\"d\",\"http://ok.example/\"\n\"2\",\"d\n", "list:"},
		{"nope", "", "unknown import format"},
	} {
		_, err := Import("list", strings.NewReader(tc.in), tc.format)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s %q: %v, want %q", tc.format, tc.in, err, tc.want)
		}
	}
}

// FuzzImport: every format either gives names the signature parser takes
// back, or fails with one line naming the list.
func FuzzImport(f *testing.F) {
	for i, s := range []string{hostsList, rpzZone, urlhausCSV} {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		format := ImportFormats[int(which)%len(ImportFormats)]
		im, err := Import("list", bytes.NewReader(data), format)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.File != "list" || strings.Contains(err.Error(), "\n") {
				t.Fatalf("%s: error %q is not one line naming the list", format, err)
			}
			return
		}
		if len(im.Domains) == 0 {
			return
		}
		var b bytes.Buffer
		if err := WriteImported(&b, im, ImportOptions{ID: "imp", Family: "F", Source: "list", Format: format}); err != nil {
			t.Fatal(err)
		}
		set, err := Parse("out", []byte("serial: 1\nsignatures:\n"+b.String()))
		if err != nil {
			t.Fatalf("%s: imported entries do not parse: %v\n%s", format, err, b.String())
		}
		if set.Stats().Domains != len(im.Domains) {
			t.Fatalf("%d names written, %d read back", len(im.Domains), set.Stats().Domains)
		}
	})
}

func TestWriteDiff(t *testing.T) {
	old, err := Parse("old", []byte(`serial: 1
signatures:
  - id: a
    family: A
    domains: [x.example, y.example, {name: z.example, action: nxdomain}]
    tftp_files: [a.exe]
  - id: gone
    family: G
    domains: [g.example]
`))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := Parse("new", []byte(`serial: 2
expires: 2027-01-01T00:00:00Z
signatures:
  - id: a
    family: A2
    domains: [x.example, w.example, {name: z.example, action: nodata}]
    tftp_files: [a.exe, b.exe]
    payloads: [{proto: tcp, port: 445, contains: abc}]
  - id: fresh
    family: F
    domains: [f.example]
`))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	n, err := WriteDiff(&b, old, cur)
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"serial 1 -> 2", "expires never -> 2027-01-01T00:00:00Z",
		"~ signature a (A2)", `~ family "A" -> "A2"`, "+ name w.example", "- name y.example",
		"~ name z.example: nxdomain, strong -> nodata, strong", "+ tftp_file b.exe", `+ payload tcp/445 "abc"`,
		"+ signature fresh (F)", "+ name f.example", "- signature gone (G)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}
	if n != 8 {
		t.Errorf("%d changes:\n%s", n, out)
	}
	b.Reset()
	if n, _ := WriteDiff(&b, cur, cur); n != 0 || !strings.Contains(b.String(), "does not go up") {
		t.Errorf("same file: %d\n%s", n, b.String())
	}
}

func TestExpires(t *testing.T) {
	set, err := Parse("f", []byte("serial: 1\nexpires: 2027-01-01T01:00:00+01:00\nsignatures: []\n"))
	if err != nil || !set.Expires().Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("%v %v", set, err)
	}
	for _, bad := range []string{"2027-01-01", "2027-01-01T00:00:00", "[1]", "tomorrow", ""} {
		_, err := Parse("f", []byte("serial: 1\nexpires: "+bad+"\nsignatures: []\n"))
		if err == nil || !strings.HasPrefix(err.Error(), "f:2: ") {
			t.Errorf("expires %q: %v", bad, err)
		}
	}
}
