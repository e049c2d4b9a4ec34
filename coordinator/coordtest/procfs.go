package coordtest

import (
	"fmt"
	"os"
	"time"

	"github.com/prometheus/procfs"
)

// CPUTime is the CPU time process pid has used, user and system, from
// /proc/PID/stat (Linux only; read by prometheus/procfs, as the
// coordinator's own process metrics are).
func CPUTime(pid int) (time.Duration, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, fmt.Errorf("process %d's CPU time: %w", pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		return 0, fmt.Errorf("process %d's CPU time: %w", pid, err)
	}
	return time.Duration(st.CPUTime() * float64(time.Second)), nil
}

// Memory is a process's resident set from /proc/PID/status: now (VmRSS)
// and its peak (VmHWM), in bytes.
type Memory struct{ RSS, Peak int64 }

// MemoryOf reads process pid's resident set and its peak (Linux only).
func MemoryOf(pid int) (Memory, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return Memory{}, fmt.Errorf("process %d's memory: %w", pid, err)
	}
	st, err := p.NewStatus()
	if err != nil {
		return Memory{}, fmt.Errorf("process %d's memory: %w", pid, err)
	}
	if st.VmRSS == 0 || st.VmHWM == 0 {
		return Memory{}, fmt.Errorf("process %d's memory: no VmRSS or VmHWM in /proc/%d/status", pid, pid)
	}
	return Memory{RSS: int64(st.VmRSS), Peak: int64(st.VmHWM)}, nil
}

// ResetPeakRSS sets process pid's peak resident set (VmHWM) to its
// resident set now (writing 5 to /proc/PID/clear_refs, Linux 4.0 on; the
// process must be ours), so that a later MemoryOf's Peak is the peak since
// this call.
func ResetPeakRSS(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("resetting process %d's peak RSS: %w", pid, err)
	}
	return nil
}
