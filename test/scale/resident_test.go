//go:build scale

package scale

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
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
