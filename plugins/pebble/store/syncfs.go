package store

import (
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// osSyncFS is the file system of the "normal" sync level: pebble's log
// files (*.log) are written to the operating system at every synced commit,
// as with the "full" level, but not forced to the disk. A commit then
// survives a crash of the plugin, whose writes the kernel holds, but not
// one of the machine, which may lose the last commits; the log is written
// in order and checksummed, so what survives is a prefix of the batches,
// each whole, with its cursor. This is SQLite's synchronous=NORMAL in WAL
// mode, the other plugin's default. Tables, the manifest and the
// directories are synced as always.
type osSyncFS struct {
	vfs.FS
}

func isLog(name string) bool { return strings.HasSuffix(name, ".log") }

func (fs osSyncFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return wrapLog(name, f, err)
}

func (fs osSyncFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, category, opts...)
	return wrapLog(name, f, err)
}

func (fs osSyncFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return wrapLog(newname, f, err)
}

func wrapLog(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !isLog(name) {
		return f, err
	}
	return unsyncedFile{f}, nil
}

// unsyncedFile is a log file whose syncs only mean that its writes reached
// the operating system, which every write already has when it returns.
type unsyncedFile struct {
	vfs.File
}

func (unsyncedFile) Sync() error     { return nil }
func (unsyncedFile) SyncData() error { return nil }

func (unsyncedFile) SyncTo(int64) (fullSync bool, err error) { return true, nil }

// Fd hides the descriptor, so that nothing syncs a range of the file
// through it behind Sync's back.
func (unsyncedFile) Fd() uintptr { return vfs.InvalidFd }
