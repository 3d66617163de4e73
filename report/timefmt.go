package report

import (
	"time"

	"wormsink/evidence"
)

// appendTime appends t as evidence.TimeFormat does for a UTC time
// ("2026-11-24T00:43:13.351Z"), without time.Time.AppendFormat's layout
// walk and calendar look-ups: a CSV report of a million hosts formats two
// times a row. Times outside 1970–9999, or in another zone, take
// AppendFormat.
func appendTime(dst []byte, t time.Time) []byte {
	if t.Location() != time.UTC {
		return t.AppendFormat(dst, evidence.TimeFormat)
	}
	secs := t.Unix()
	if secs < 0 || secs >= year10000 {
		return t.AppendFormat(dst, evidence.TimeFormat)
	}
	days, rem := secs/86400, secs%86400
	y, m, d := civil(days)
	var b [24]byte
	put4(b[0:], y)
	b[4] = '-'
	put2(b[5:], m)
	b[7] = '-'
	put2(b[8:], d)
	b[10] = 'T'
	put2(b[11:], int(rem/3600))
	b[13] = ':'
	put2(b[14:], int(rem/60%60))
	b[16] = ':'
	put2(b[17:], int(rem%60))
	b[19] = '.'
	ms := t.Nanosecond() / 1e6 // truncated, as the layout's .000 is
	b[20] = byte('0' + ms/100)
	put2(b[21:], ms%100)
	b[23] = 'Z'
	return append(dst, b[:]...)
}

// year10000 is 10000-01-01 in Unix seconds.
const year10000 = 253402300800

// civil converts days since 1970-01-01 (not negative) to a proleptic
// Gregorian date (Howard Hinnant's days_from_civil, inverted).
func civil(days int64) (y, m, d int) {
	z := days + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		m = int(mp + 3)
	} else {
		m = int(mp - 9)
	}
	y = int(yoe + era*400)
	if m <= 2 {
		y++
	}
	return y, m, d
}

func put2(b []byte, v int) { b[0], b[1] = byte('0'+v/10), byte('0'+v%10) }

func put4(b []byte, v int) { put2(b, v/100); put2(b[2:], v%100) }
