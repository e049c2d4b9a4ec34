package aggregate

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePageFloats returns n float32 in an anonymous mapping advised to use
// transparent huge pages, as NumPy's allocator does for large arrays; nil
// when the kernel refuses. The mapping lives as long as the process.
func hugePageFloats(n int) []float32 {
	const huge = 2 << 20
	m, err := unix.Mmap(-1, 0, 4*n+huge, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil
	}
	// Start on a 2 MB boundary, so that every 2 MB of data is one page.
	off := (huge - int(uintptr(unsafe.Pointer(&m[0])))%huge) % huge
	m = m[off:]
	if unix.Madvise(m, unix.MADV_HUGEPAGE) != nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&m[0])), n)
}
