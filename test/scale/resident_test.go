//go:build scale

package scale

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// residentPages returns the page numbers (4 KiB from the file's start) of the file
// at path that this process has mapped and resident now: from /proc/self/maps and
// /proc/self/pagemap (bit 63, present).
func residentPages(t *testing.T, path string) map[uint64]bool {
	maps, err := os.Open("/proc/self/maps")
	require.NoError(t, err)
	defer maps.Close()
	pm, err := os.Open("/proc/self/pagemap")
	require.NoError(t, err)
	defer pm.Close()
	pages := map[uint64]bool{}
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[5] != path {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, err := strconv.ParseUint(lo, 16, 64)
		require.NoError(t, err)
		end, err := strconv.ParseUint(hi, 16, 64)
		require.NoError(t, err)
		off, err := strconv.ParseUint(f[2], 16, 64)
		require.NoError(t, err)
		n := (end - start) / 4096
		buf := make([]byte, 8*n)
		_, err = pm.ReadAt(buf, int64(start/4096*8))
		require.NoError(t, err)
		for i := uint64(0); i < n; i++ {
			if binary.LittleEndian.Uint64(buf[8*i:])&(1<<63) != 0 {
				pages[off/4096+i] = true
			}
		}
	}
	return pages
}

// pageOwners walks the bbolt file at path (4 KiB pages) from its newest meta page and
// returns, for every page of a bucket's tree, the bucket's path ("consents",
// "attempts", a nested bucket as "a/b"); the free list page is "(freelist)".
func pageOwners(t *testing.T, path string) map[uint64]string {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	le := binary.LittleEndian
	const ps = 4096
	var root, free, txid uint64
	for i := 0; i < 2; i++ {
		// magic 0, version 4, pageSize 8, flags 12, root 16 (pgid, sequence),
		// freelist 32, pgid 40, txid 48
		m := data[i*ps+16:]
		if tx := le.Uint64(m[48:]); i == 0 || tx > txid {
			txid, root, free = tx, le.Uint64(m[16:]), le.Uint64(m[32:])
		}
	}
	owners := map[uint64]string{}
	page := func(id uint64) []byte { return data[id*ps:] }
	var walk func(p []byte, id uint64, name string)
	walkBucket := func(name string, v []byte) {
		r := le.Uint64(v)
		if r == 0 { // inline: the page follows the 16-byte header
			walk(v[16:], ^uint64(0), name)
			return
		}
		walk(page(r), r, name)
	}
	walk = func(p []byte, id uint64, name string) {
		flags, count, overflow := le.Uint16(p[8:]), int(le.Uint16(p[10:])), uint64(le.Uint32(p[12:]))
		if id != ^uint64(0) {
			for j := uint64(0); j <= overflow; j++ {
				owners[id+j] = name
			}
		}
		for i := 0; i < count; i++ {
			e := p[16+16*i:]
			if flags&0x01 != 0 { // branch: pos, ksize, pgid
				c := le.Uint64(e[8:])
				walk(page(c), c, name)
				continue
			}
			// leaf: flags, pos, ksize, vsize
			ef, pos, ks, vs := le.Uint32(e), le.Uint32(e[4:]), le.Uint32(e[8:]), le.Uint32(e[12:])
			if ef&0x01 == 0 {
				continue
			}
			k := e[pos : pos+ks]
			v := e[pos+ks : pos+ks+vs]
			sub := string(k)
			if name != "" {
				sub = name + "/" + sub
			}
			walkBucket(sub, v)
		}
	}
	walk(page(root), root, "")
	if free != ^uint64(0) {
		owners[free] = "(freelist)"
	}
	return owners
}

// residentByBucket is MiB resident per bucket (and "(free or unowned)").
func residentByBucket(resident map[uint64]bool, owners map[uint64]string) string {
	mib := map[string]int{}
	for p := range resident {
		o, ok := owners[p]
		if !ok {
			o = "(free)"
		}
		if o == "" {
			o = "(root)"
		}
		mib[o]++
	}
	type kv struct {
		k string
		n int
	}
	var xs []kv
	for k, n := range mib {
		xs = append(xs, kv{k, n})
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].n > xs[j].n })
	var b strings.Builder
	for _, x := range xs {
		fmt.Fprintf(&b, "%s %.1f; ", x.k, float64(x.n)*4096/(1<<20))
	}
	return b.String()
}

// TestFaultMapping measures how much of a cached file one read of a page maps into
// the process, by how the file was written: 4 KiB at a time (as bbolt writes the pages
// of a commit) or in one write (as cp does), and by the madvise advice on the
// mapping. It asserts nothing; it reports what the kernel does (see
// docs/BENCHMARKS.md, "Issue 13, seventh pass").
//
//	go test -tags scale -run '^TestFaultMapping$' -v -count=1 ./test/scale/
func TestFaultMapping(t *testing.T) {
	const size = 64 << 20
	path := filepath.Join(t.TempDir(), "file")
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	for _, piece := range []int{4096, size} {
		f, err := os.Create(path)
		require.NoError(t, err)
		for off := 0; off < size; off += piece {
			_, err := f.WriteAt(data[off:off+piece], int64(off))
			require.NoError(t, err)
		}
		require.NoError(t, f.Sync())
		for _, advice := range []struct {
			name string
			adv  []int
		}{{"none", nil}, {"MADV_RANDOM", []int{syscall.MADV_RANDOM}}, {"MADV_RANDOM+MADV_NOHUGEPAGE", []int{syscall.MADV_RANDOM, syscall.MADV_NOHUGEPAGE}}} {
			for _, stride := range []int{64 << 10, 1 << 20, 4 << 20} {
				m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
				require.NoError(t, err)
				for _, a := range advice.adv {
					require.NoError(t, syscall.Madvise(m, a))
				}
				before := statusKB(t, "RssFile")
				sum := 0
				for p := 0; p < size; p += stride {
					sum += int(m[p])
				}
				after := statusKB(t, "RssFile")
				require.NoError(t, syscall.Munmap(m))
				touched := size / stride
				faultSink += sum
				report(t, "fault mapping: file written %d KiB at a time, advice %s: %d reads, one every %d KiB, mapped %d KiB (%d KiB a read)",
					piece>>10, advice.name, touched, stride>>10, after-before, (after-before)/touched)
			}
		}
		require.NoError(t, f.Close())
	}
	report(t, "fault mapping: %s", kernelRelease(t))
}

// faultSink keeps TestFaultMapping's reads from being optimized away.
var faultSink int

func kernelRelease(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	require.NoError(t, err)
	return "Linux " + strings.TrimSpace(string(b))
}
