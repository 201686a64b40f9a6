package modrun

import (
	"fmt"
	"os"
	"syscall"
)

// captureStdout keeps the real stdout for the result and points file
// descriptor 1 (and os.Stdout) at stderr for the rest of the run.
func captureStdout() (out *os.File, restore func(), err error) {
	fd, err := syscall.Dup(1)
	if err != nil {
		return nil, nil, fmt.Errorf("dup stdout: %w", err)
	}
	if err := syscall.Dup3(2, 1, 0); err != nil {
		syscall.Close(fd)
		return nil, nil, fmt.Errorf("redirect stdout: %w", err)
	}
	saved := os.Stdout
	os.Stdout = os.Stderr
	out = os.NewFile(uintptr(fd), "stdout")
	return out, func() { os.Stdout = saved }, nil
}
