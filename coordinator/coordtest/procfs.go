package coordtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/PID/stat's times: Linux reports them in
// USER_HZ, 100 per second on every architecture Go supports.
const userHZ = 100

// CPUTime is the CPU time process pid has used, user and system, from
// /proc/PID/stat (Linux only), to 10 ms.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("process %d's CPU time: %w", pid, err)
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// fields are counted after its closing one (field 3 on).
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, fmt.Errorf("process %d's CPU time: /proc/%d/stat unreadable", pid, pid)
	}
	f := strings.Fields(string(b[end+1:]))
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("process %d's CPU time: /proc/%d/stat has %d fields", pid, pid, len(f)+2)
	}
	var ticks int64
	for _, s := range []string{f[utime], f[stime]} {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("process %d's CPU time: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// Memory is a process's resident set from /proc/PID/status: now (VmRSS)
// and its peak (VmHWM), in bytes.
type Memory struct{ RSS, Peak int64 }

// MemoryOf reads process pid's resident set and its peak (Linux only).
func MemoryOf(pid int) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("process %d's memory: %w", pid, err)
	}
	defer f.Close()
	var m Memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != "VmRSS" && key != "VmHWM" {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("process %d's memory: %s: %w", pid, key, err)
		}
		if key == "VmRSS" {
			m.RSS = kb << 10
		} else {
			m.Peak = kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return Memory{}, fmt.Errorf("process %d's memory: %w", pid, err)
	}
	if m.RSS == 0 || m.Peak == 0 {
		return Memory{}, fmt.Errorf("process %d's memory: no VmRSS or VmHWM in /proc/%d/status", pid, pid)
	}
	return m, nil
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
