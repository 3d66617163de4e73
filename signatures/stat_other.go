//go:build !unix

package signatures

import "os"

func toFileStat(fi os.FileInfo) fileStat {
	return fileStat{size: fi.Size(), mtime: fi.ModTime()}
}
