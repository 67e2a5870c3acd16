package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
)

// What a file is, told from its bytes without opening it with bbolt: for a command
// about to write a file (billingd's output files), which must never write over a
// database, whatever its name. Nothing here takes a lock or waits: a file a daemon
// holds is read as any other.

// metaPageFlag marks a meta page in its page header (bbolt's common.MetaPageFlag).
const metaPageFlag = 0x04

// IsBoltFile reports whether the file at path is a bbolt file: a billingd database,
// an archive file (<db>.archive, a bbolt file too), a backup or another copy of one,
// or another program's bbolt database. It reads the headers of the two meta pages,
// as bbolt does before it opens a file: bbolt's magic number 0xED0CDAED at byte 16
// of page 0, else at byte 16 of page 1 (its page header saying page 1, a meta page)
// for each page size bbolt looks for, 1 KiB to 16 MiB; so a file whose first page
// is damaged is still told. It does not open the file with bbolt and takes no lock,
// so it answers at once for a file a daemon holds.
//
// It returns false, nil for a missing path, an empty file, a file too short to hold
// a meta page, and anything but a regular file (a directory, a device, a FIFO: not
// read, since opening a FIFO would wait for a writer); an error when a regular file
// is there but cannot be read (permission denied, an I/O error).
func IsBoltFile(path string) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() {
		return false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	le := binary.LittleEndian
	buf := make([]byte, pageHeaderSize+8)
	// read is the page header and meta magic at off; false when the file ends first.
	read := func(off int64) (bool, error) {
		n, err := f.ReadAt(buf, off)
		if err == io.EOF && n < len(buf) {
			return false, nil
		}
		return err == nil, err
	}
	ok, err := read(0)
	if err != nil || !ok {
		return false, err
	}
	if le.Uint32(buf[pageHeaderSize:]) == metaMagic {
		return true, nil
	}
	for i := range 15 {
		off := int64(1024) << i
		if off >= fi.Size() {
			break
		}
		ok, err := read(off)
		if err != nil {
			return false, err
		}
		if ok && le.Uint64(buf[0:]) == 1 && le.Uint16(buf[8:])&metaPageFlag != 0 && le.Uint32(buf[pageHeaderSize:]) == metaMagic {
			return true, nil
		}
	}
	return false, nil
}

// IsLockFile reports whether the file at path holds the mark a writer leaves in the
// lock file beside the database it opened (markLock): it is a database's lock file,
// wherever it is and whatever its name. A lock file no writer marked (empty) is not
// told from other empty files. false when the file cannot be read.
func IsLockFile(path string) bool {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < int64(len(lostDatabaseMark)) {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, len(lostDatabaseMark))
	if _, err := io.ReadFull(f, buf); err != nil {
		return false
	}
	return bytes.Equal(buf, []byte(lostDatabaseMark))
}

// IsArchiveFile reports whether the bbolt file at path is an archive file (its meta
// bucket names the database it was made for), wherever it is and whatever its name.
// It opens the file read-only, waiting at most 100ms for its lock: false for a file
// another process holds, or one that cannot be read. A caller that must not touch a
// file a daemon holds asks IsBoltFile first, and only this for a file nothing else
// marks as live (no lock file beside it). A damaged file is not one (bbolt's panics
// while opening it are recovered).
func IsArchiveFile(path string) bool {
	found := false
	_ = guard(func() error {
		found = isArchiveFile(path)
		return nil
	})
	return found
}
