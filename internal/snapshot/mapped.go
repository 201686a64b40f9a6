package snapshot

import (
	"runtime"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// mapDropper keeps bbolt's memory map of a database from making the whole
// file resident in this process while it is read, by telling the kernel
// that the mapped pages are not needed (MADV_DONTNEED). For a read-only
// shared file mapping that only unmaps them from this process: they stay
// in the page cache, and a page read again is mapped back on access, so a
// reader never sees anything but the file.
type mapDropper struct {
	addr, length uintptr
	pending      int // bytes read since the last drop
}

// dropBytes is how much is read between two drops on the reading path.
const dropBytes = 4 << 20

func newMapDropper(db *bolt.DB, size int64) *mapDropper {
	return &mapDropper{addr: db.Info().Data, length: uintptr(size)}
}

// sequential tells the kernel the map will be read in order (bbolt asks
// for random access), so that faults on pages not cached read ahead.
func (d *mapDropper) sequential() {
	syscall.Syscall(syscall.SYS_MADVISE, d.addr, d.length, syscall.MADV_SEQUENTIAL)
}

// unmap drops every page of the map from this process.
func (d *mapDropper) unmap() {
	syscall.Syscall(syscall.SYS_MADVISE, d.addr, d.length, syscall.MADV_DONTNEED)
}

func (d *mapDropper) drop() {
	d.unmap()
	d.pending = 0
}

// read counts n bytes read through the map and drops the map's pages
// every dropBytes.
func (d *mapDropper) read(n int) {
	if d.pending += n; d.pending >= dropBytes {
		d.drop()
	}
}

// during runs f, which reads through the map in code that cannot call
// read (bbolt's own consistency check), while another goroutine drops the
// map's pages again and again.
func (d *mapDropper) during(f func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			default:
				d.unmap()
				runtime.Gosched()
			}
		}
	}()
	f()
	close(done)
	<-finished
	d.drop()
}
