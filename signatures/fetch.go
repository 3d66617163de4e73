package signatures

import "bytes"

// The fetch-command scanner reads a TCP payload as a shell would after
// telnet and URL decoding, and returns the file names that TFTP fetch
// commands in it ask for. It is what a command rule matches on: the name a
// loader fetches, not a substring that a web page can carry by chance.
//
// Decoding, in layers, each working on the output of the one before:
//   - telnet: IAC sequences (0xFF ...) are removed, IAC IAC is one 0xFF;
//   - URL: %XX is the byte XX, '+' is a space (applied to every payload:
//     neither means anything to a shell, and an HTTP body in a segment of
//     its own carries no request line to recognise it by);
//   - shell: ${IFS...} and $IFS are spaces, $1..$9 are empty, quotes
//     separate words, and ; & | ` ( ) < > { } CR LF NUL end a command.
//
// A command starts at a word whose last part (after the last character
// other than a letter, digit, '_', '.' or '-') is tftp, atftp or tftp.exe,
// so /bin/busybox tftp, cmd=tftp and C:\WINDOWS\tftp.exe all count, and
// runs to the end of the command. Its fetched names:
//   - busybox, atftp: with -g (or --get) anywhere, the last -r NAME
//     (-rNAME, --remote-file NAME, --remote-file=NAME), or without one the
//     last -l NAME, which busybox then fetches under the same name;
//   - tftp-hpa: -c get NAME;
//   - Windows: the word after a GET (any case) that follows a host and is
//     no option's value, in a command without -g: tftp -i HOST GET NAME.
//
// -l, -b, -m and -R take a value, as -r does (-l is busybox's local file;
// tftp-hpa's -l takes none, but a host mistaken for its value changes
// nothing). Words longer than maxFetchName are kept as "too long": no
// tftp_files entry can name them.

// maxFetchName is the longest word kept: a tftp_files entry is at most 255
// bytes.
const maxFetchName = 255

// fetchWord is one word of a command: its bytes (up to maxFetchName) and
// whether it was longer.
type fetchWord struct {
	b    [maxFetchName]byte
	n    int
	long bool
}

func (w *fetchWord) bytes() []byte { return w.b[:w.n] }

func (w *fetchWord) set(src *fetchWord) { *w = *src }

// fetchScanner walks a payload's fetch commands; the zero value after
// reset is ready. It allocates nothing: a caller keeps it on its stack.
type fetchScanner struct {
	data  []byte
	i     int  // raw offset of the next decoded byte
	plain bool // data has no %, $ or IAC: decoding changes no word
	tok   fetchWord

	// The command being read, and the names it fetches.
	remote, local, cget, winget fetchWord
	get                         bool
	haveRemote, haveLocal       bool
	haveCget, haveWinget        bool
	out                         [4]uint8 // names to hand out (outCget...)
	nOut, iOut                  int

	// Command boundaries, kept when track is set (MatchStream): how many
	// separators were read, the raw offset after the last one (-1: none),
	// how many preceded the command whose names are handed out, and
	// whether that command ran to the end of the data (open: more of it
	// may follow in the stream's next segment).
	track   bool
	seps    int
	lastSep int
	cmdSeps int
	cmdOpen bool
	// With track: the raw offset of the command word of the command
	// handed out last, and where the last token began (the word the data
	// ends in, or the end): the places a stream can be cut without
	// changing what the scanner reads after them (see MatchStream).
	cmdWord  int
	tokStart int
}

func (f *fetchScanner) reset(data []byte) {
	f.data, f.i, f.nOut, f.iOut = data, 0, 0, 0
	f.seps, f.lastSep, f.cmdSeps, f.cmdOpen = 0, -1, 0, false
	f.cmdWord, f.tokStart = 0, 0
	f.plain = bytes.IndexByte(data, '%') < 0 && bytes.IndexByte(data, '$') < 0 && bytes.IndexByte(data, 0xff) < 0
}

// skipToClient moves, in a plain payload (no byte that decodes to
// another), to the start of the next word holding "tftp": no other word
// can start a command. It returns false when there is none.
func (f *fetchScanner) skipToClient() bool {
	j := indexFold(f.data[f.i:], []byte("tftp"))
	if j < 0 {
		if f.track {
			// The word the data ends in starts after the last boundary;
			// without one, at the last token read (which may join it).
			if b := lastBoundary(f.data, f.tokStart); b >= 0 {
				f.tokStart = b
			}
		}
		f.skipped(len(f.data))
		return false
	}
	j += f.i
	for j > f.i && plainWordByte[f.data[j-1]] {
		j--
	}
	f.skipped(j)
	return true
}

// skipped moves a plain scan on to raw offset j, noting the separators
// it passed (in plain data a separator byte is a separator).
func (f *fetchScanner) skipped(j int) {
	if f.track {
		for k := j - 1; k >= f.i; k-- {
			if shellSep[f.data[k]] {
				f.seps++
				f.lastSep = k + 1
				break
			}
		}
	}
	f.i = j
}

// next returns the next fetched name, which stays valid until the
// following call; long says the name was longer than maxFetchName.
func (f *fetchScanner) next() (name []byte, long, ok bool) {
	for {
		if f.iOut < f.nOut {
			w := f.word(f.out[f.iOut])
			f.iOut++
			return w.bytes(), w.long, true
		}
		if !f.command() {
			return nil, false, false
		}
	}
}

// Token kinds.
const (
	tokEnd = iota
	tokWord
	tokSep
)

// command finds the next command word and reads its command, queueing
// the names it fetches. It returns false at the end of the payload.
func (f *fetchScanner) command() bool {
	for {
		if f.plain && !f.skipToClient() {
			return false
		}
		switch f.token() {
		case tokEnd:
			return false
		case tokWord:
			if isFetchCommand(f.tok.bytes()) {
				f.cmdSeps, f.cmdWord = f.seps, f.tokStart
				end := f.args()
				f.cmdOpen = end
				f.emit()
				if f.nOut > 0 || !end {
					return true
				}
				return false
			}
		}
	}
}

// args reads a command's arguments up to the end of the command; it
// reports whether the payload ended there.
func (f *fetchScanner) args() (atEnd bool) {
	f.get, f.haveRemote, f.haveLocal, f.haveCget, f.haveWinget = false, false, false, false, false
	state := argPlain
	pendingGet := false // a Windows GET waits for its file
	positional := 0     // words that are neither options nor their values
	for {
		switch f.token() {
		case tokEnd:
			return true
		case tokSep:
			return false
		}
		w := f.tok.bytes()
		switch state {
		case argRemote:
			f.remote.set(&f.tok)
			f.haveRemote, state = true, argPlain
			continue
		case argLocal:
			f.local.set(&f.tok)
			f.haveLocal, state = true, argPlain
			continue
		case argSkip:
			state = argPlain
			continue
		case argVerb:
			state = argPlain
			if equalFoldBytes(w, "get") {
				state = argCget
			}
			continue
		case argCget:
			f.cget.set(&f.tok)
			f.haveCget, state = true, argPlain
			continue
		}
		switch {
		case len(w) > 2 && w[0] == '-' && w[1] == '-':
			state = f.long(w[2:])
		case len(w) > 1 && w[0] == '-':
			state = f.short(w[1:])
		case pendingGet:
			f.winget.set(&f.tok)
			f.haveWinget, pendingGet = true, false
		case positional > 0 && equalFoldBytes(w, "get"):
			pendingGet = true // tftp [-i] HOST GET NAME
		default:
			positional++
		}
	}
}

// What the next word of a command is.
const (
	argPlain  = iota
	argRemote // the value of -r
	argLocal  // the value of -l
	argSkip   // the value of another option
	argVerb   // after -c: the tftp-hpa command
	argCget   // after -c get: the file
)

// short reads a cluster of short options (-gr, -l, -rNAME) and returns
// the state for the next word.
func (f *fetchScanner) short(c []byte) int {
	for i := 0; i < len(c); i++ {
		switch c[i] {
		case 'g':
			f.get = true
		case 'r', 'l':
			if i+1 < len(c) {
				// The rest of the cluster is the value: copy it in place
				// of the token, which it is a part of.
				v := c[i+1:]
				dst := &f.remote
				if c[i] == 'l' {
					dst = &f.local
					f.haveLocal = true
				} else {
					f.haveRemote = true
				}
				dst.n = copy(dst.b[:], v)
				dst.long = f.tok.long
				return argPlain
			}
			if c[i] == 'r' {
				return argRemote
			}
			return argLocal
		case 'b', 'm', 'R':
			if i+1 < len(c) {
				return argPlain
			}
			return argSkip
		case 'c':
			if i+1 < len(c) {
				if equalFoldBytes(c[i+1:], "get") {
					return argCget
				}
				return argPlain
			}
			return argVerb
		}
	}
	return argPlain
}

// long reads a long option (without its dashes).
func (f *fetchScanner) long(o []byte) int {
	name, val, hasVal := bytes.Cut(o, []byte{'='})
	switch string(name) {
	case "get":
		f.get = true
	case "remote-file", "local-file":
		dst := &f.remote
		if name[0] == 'l' {
			dst = &f.local
		}
		if !hasVal {
			if name[0] == 'l' {
				return argLocal
			}
			return argRemote
		}
		dst.n = copy(dst.b[:], val)
		dst.long = f.tok.long
		if name[0] == 'l' {
			f.haveLocal = true
		} else {
			f.haveRemote = true
		}
	}
	return argPlain
}

// The words a command's names are in (indices, not pointers: a pointer
// into the scanner stored in it would move the scanner to the heap).
const (
	outCget = iota
	outWinget
	outRemote
	outLocal
)

func (f *fetchScanner) word(i uint8) *fetchWord {
	switch i {
	case outCget:
		return &f.cget
	case outWinget:
		return &f.winget
	case outRemote:
		return &f.remote
	}
	return &f.local
}

// emit queues what the command just read fetches.
func (f *fetchScanner) emit() {
	f.nOut, f.iOut = 0, 0
	queue := func(i uint8) {
		f.out[f.nOut] = i
		f.nOut++
	}
	if f.haveCget {
		queue(outCget)
	}
	if f.haveWinget && !f.get { // -g: not the Windows client
		queue(outWinget)
	}
	if f.get {
		switch {
		case f.haveRemote:
			queue(outRemote)
		case f.haveLocal:
			queue(outLocal)
		}
	}
}

// isFetchCommand reports whether a word runs a TFTP client: its last part
// after any character other than a letter, digit, '_', '.' or '-' is
// tftp, atftp or tftp.exe, in any case.
func isFetchCommand(w []byte) bool {
	i := len(w)
	for i > 0 && isNameChar(w[i-1]) {
		i--
	}
	w = w[i:]
	return equalFoldBytes(w, "tftp") || equalFoldBytes(w, "atftp") || equalFoldBytes(w, "tftp.exe")
}

// equalFoldBytes compares b (any case) with want (lower case).
func equalFoldBytes(b []byte, want string) bool {
	if len(b) != len(want) {
		return false
	}
	for i := range b {
		if lower(b[i]) != want[i] {
			return false
		}
	}
	return true
}

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// token reads the next word (into f.tok) or command separator.
func (f *fetchScanner) token() int {
	for { // skip spaces
		if f.i < len(f.data) {
			// At the end already, the last token is the one that ran
			// into it: unfinished, and where a cut must keep from.
			f.tokStart = f.i
		}
		c, plus, next, ok := unit(f.data, f.i)
		if !ok {
			// tokStart stays where an unfinished IAC sequence begins.
			f.i = len(f.data)
			return tokEnd
		}
		switch {
		case plus || isShellSpace(c):
			f.i = next
			continue
		case isShellSep(c):
			f.i = next
			f.seps++
			f.lastSep = next
			return tokSep
		case c == '$':
			kind, n := dollar(f.data, next)
			if kind == dollarShort && f.track {
				f.i = len(f.data) // the rest of it is in the next segment
				return tokEnd
			}
			if kind != dollarLiteral && kind != dollarShort {
				f.i = n
				continue
			}
		}
		break
	}
	f.tok.n, f.tok.long = 0, false
	for {
		// Most bytes are plain: taken as they are, without decoding.
		if f.i < len(f.data) && plainWordByte[f.data[f.i]] {
			if f.tok.n < maxFetchName {
				f.tok.b[f.tok.n] = f.data[f.i]
				f.tok.n++
			} else {
				f.tok.long = true
			}
			f.i++
			continue
		}
		c, plus, next, ok := unit(f.data, f.i)
		if !ok || plus || isShellSpace(c) || isShellSep(c) {
			return tokWord // the space or separator is read by the next call
		}
		if c == '$' {
			switch kind, n := dollar(f.data, next); kind {
			case dollarShort:
				if f.track {
					f.i = len(f.data) // the rest of it is in the next segment
					return tokWord
				}
			case dollarSpace:
				return tokWord
			case dollarEmpty:
				f.i = n
				continue
			}
		}
		if f.tok.n < maxFetchName {
			f.tok.b[f.tok.n] = c
			f.tok.n++
		} else {
			f.tok.long = true
		}
		f.i = next
	}
}

// plainWordByte: bytes that are a word's byte as they are, in every
// decoding layer.
var plainWordByte = func() (t [256]bool) {
	for c := 0x21; c < 0x7f; c++ {
		t[c] = !isShellSpace(byte(c)) && !isShellSep(byte(c)) && c != '%' && c != '+' && c != '$'
	}
	for c := 0x80; c < 0xff; c++ {
		t[c] = true
	}
	return t
}()

// lastBoundary returns the raw offset after the last word or command
// boundary in d[from:] that decodes as one whatever follows it (a space,
// '+', a separator, or %XX spelling one), or -1. In data without IAC
// bytes, the scanner reads what follows it the same whether or not the
// bytes before it are there, as long as no command is open before it.
func lastBoundary(d []byte, from int) int {
	for k := len(d) - 1; k >= from; k-- {
		c := d[k]
		if wordEnd[c] {
			return k + 1
		}
		if c == '%' && k+2 < len(d) {
			if h, l := unhex(d[k+1]), unhex(d[k+2]); h >= 0 && l >= 0 && wordEnd[byte(h<<4|l)] {
				return k + 3
			}
		}
	}
	return -1
}

// wordEnd: bytes that end a word as they are: spaces, '+', separators.
var wordEnd = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isShellSpace(byte(c)) || isShellSep(byte(c)) || c == '+'
	}
	return t
}()

// isShellSpace: characters that separate words. Quotes count as spaces:
// a quoted word is the word, and commands nested in JSON or XML strings
// are read as the program they are handed to reads them.
func isShellSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '"' || c == '\''
}

// shellSep is isShellSep as a table, for scanning.
var shellSep = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isShellSep(byte(c))
	}
	return t
}()

// isShellSep: characters that end a command.
func isShellSep(c byte) bool {
	switch c {
	case ';', '&', '|', '`', '(', ')', '<', '>', '{', '}', '\r', '\n', 0:
		return true
	}
	return false
}

// What a '$' stands for.
const (
	dollarLiteral = iota
	dollarSpace   // $IFS, ${IFS}, ${IFS%??}...
	dollarEmpty   // $1 .. $9: unset positional parameters
	// dollarShort: the data ends inside ${...}: literal in a packet read
	// alone, but in a stream the rest follows (its brace must not end the
	// command).
	dollarShort
)

// dollar reads what follows a '$' (i is the raw offset after it) and
// returns what it stands for and the raw offset after it.
func dollar(d []byte, i int) (kind, next int) {
	c, _, n, ok := unit(d, i)
	if !ok {
		return dollarLiteral, i
	}
	if c >= '1' && c <= '9' {
		return dollarEmpty, n
	}
	braced := c == '{'
	if braced {
		if c, _, n, ok = unit(d, n); !ok {
			return dollarShort, i
		}
	}
	for _, want := range [...]byte{'I', 'F', 'S'} {
		if !ok && braced {
			return dollarShort, i
		}
		if !ok || c != want {
			return dollarLiteral, i
		}
		c, _, n, ok = unit(d, n)
	}
	// c is the unit after IFS (ok false: the end), starting at n's unit.
	if !braced {
		if ok && (isNameChar(c) && c != '.' && c != '-') {
			return dollarLiteral, i // $IFSX is another variable
		}
		// n is past c: step back to c by re-reading from after "IFS".
		return dollarSpace, unitStart(d, i, 3)
	}
	// ${IFS...}: up to the closing brace, within a few bytes that end
	// no word or command (${IFS%??}, ${IFS:0:1}).
	for k := 0; ok && k < 8; k++ {
		switch {
		case c == '}':
			return dollarSpace, n
		case isShellSep(c) || isShellSpace(c):
			return dollarLiteral, i
		}
		c, _, n, ok = unit(d, n)
	}
	if !ok && braced {
		return dollarShort, i
	}
	return dollarLiteral, i
}

// unitStart returns the raw offset after k decoded units from i.
func unitStart(d []byte, i, k int) int {
	for ; k > 0; k-- {
		_, _, n, ok := unit(d, i)
		if !ok {
			return len(d)
		}
		i = n
	}
	return i
}

var iacSE = []byte{0xff, 0xf0}

// unit decodes the byte at raw offset i: telnet IAC sequences are skipped,
// %XX is one byte, '+' a space (plus). next is the raw offset after it; ok
// is false at the end of d.
func unit(d []byte, i int) (c byte, plus bool, next int, ok bool) {
	for i < len(d) {
		c = d[i]
		if c == 0xff { // telnet IAC
			if i+1 >= len(d) {
				return 0, false, len(d), false
			}
			switch op := d[i+1]; {
			case op == 0xff:
				return 0xff, false, i + 2, true
			case op >= 251: // WILL, WONT, DO, DONT and their option
				i += 3
			case op == 250: // SB ... IAC SE
				j := bytes.Index(d[i+2:], iacSE)
				if j < 0 {
					return 0, false, len(d), false
				}
				i += 2 + j + 2
			default:
				i += 2
			}
			continue
		}
		if c == '%' && i+2 < len(d) {
			if h, l := unhex(d[i+1]), unhex(d[i+2]); h >= 0 && l >= 0 {
				return byte(h<<4 | l), false, i + 3, true
			}
		}
		if c == '+' {
			return ' ', true, i + 1, true
		}
		return c, false, i + 1, true
	}
	return 0, false, len(d), false
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// mayFetch is a cheap test in front of the scanner: false means the
// payload, however decoded, cannot spell "ftp", so holds no command.
func mayFetch(p []byte) bool {
	if indexFold(p, []byte("ftp")) >= 0 || bytes.IndexByte(p, 0xff) >= 0 {
		return true // 0xFF: an IAC removed between letters joins them
	}
	nextPct, nextDollar := -2, -2 // -2: not looked for yet
	for i := 0; i < len(p); {
		// The next '%' or '$', each found with the vectorised IndexByte.
		if nextPct != -1 && nextPct < i {
			if nextPct = bytes.IndexByte(p[i:], '%'); nextPct >= 0 {
				nextPct += i
			}
		}
		if nextDollar != -1 && nextDollar < i {
			if nextDollar = bytes.IndexByte(p[i:], '$'); nextDollar >= 0 {
				nextDollar += i
			}
		}
		switch {
		case nextPct < 0 && nextDollar < 0:
			return false
		case nextPct < 0:
			i = nextDollar
		case nextDollar < 0:
			i = nextPct
		default:
			i = min(nextPct, nextDollar)
		}
		if p[i] == '$' {
			if i+1 < len(p) && p[i+1] >= '1' && p[i+1] <= '9' {
				return true // $1..$9 vanish and join what is around them
			}
		} else if i+2 < len(p) {
			if h, l := unhex(p[i+1]), unhex(p[i+2]); h >= 0 && l >= 0 {
				switch lower(byte(h<<4 | l)) {
				case 'f', 't', 'p', '$', '1', '2', '3', '4', '5', '6', '7', '8', '9':
					return true // a letter of ftp, or what makes $N
				}
			}
		}
		i++
	}
	return false
}
