// Package logfollow follows kube-apiserver's audit log file on a node and hands out its complete
// lines, once each, across rotation, truncation and restarts of the follower.
//
// What it handles, and how:
//
//   - Rotation. kube-apiserver rotates its log (--audit-log-maxsize) through lumberjack: the file
//     is closed, renamed in the same directory to <name>-<UTC time>.<ext> (time in the layout
//     2006-01-02T15-04-05.000, so names sort in time order), and a new file is created at the
//     path; with --audit-log-compress the renamed file is then gzipped to <renamed>.gz and
//     removed. The follower keeps the file it reads open, so a renamed or removed file is still
//     read to its end. When the file at the path is another one, it reads the old file until a
//     read finds nothing more (a writer that still holds it may append after the rename), then
//     goes on with the files rotated after it, oldest first, and the new file.
//   - Truncation (a file shorter than what was read, or whose first bytes changed): it starts
//     over at offset 0 and counts a gap.
//   - Partial lines: a line is handed out only once its newline is written. A rotated file that
//     ends without a newline has an incomplete last line, counted and skipped.
//   - Long lines: a line longer than Options.MaxLineBytes is counted and skipped without being
//     held in memory, so memory stays bounded whatever the file holds.
//   - A missing file: the follower waits for it.
//   - Restarts: Commit writes a checkpoint (the file's device and inode, a hash of its first
//     bytes, the offset after the last line handed out, and the caller's own state) atomically
//     to Options.CheckpointDir. Open finds that file again, at the path or among the rotated
//     files (also gzipped), and resumes after the last committed line; lines handed out but not
//     committed are handed out again. When the file is gone (removed by --audit-log-maxbackup
//     or -maxage before it was read to its end), it counts a gap and goes on with the files
//     rotated after it.
//
// The caller polls (Follower.Poll) rather than waiting for file events: polling works on every
// file system and mount, and costs a few system calls per poll when the log is quiet.
package logfollow
