// Package agent is the node side of kaudit: it writes a revision's policy on a control-plane
// node and makes kubelet restart the static kube-apiserver pod, one node at a time, with health
// checks and rollback (see docs/design.md, "Node paths and files", "Restart and rollback" and
// "One node at a time").
//
// The layers, from the files up:
//
//   - files.go: WriteAtomic (temporary file, fsync, rename, fsync of the directory) over an
//     injectable FS, so tests inject read-only directories, full disks and crashes. No read or
//     write follows a symbolic link.
//   - lock.go: the lock on the node's state directory that one agent per node holds.
//   - package internal/staticpod: edits of the static pod manifest that keep every other byte
//     (comments, order, quoting): the policy-hash annotation, and the audit flags and hostPath
//     mounts when spec.manageAPIServerFlags is true. Each edit is verified by decoding the result.
//   - journal.go, state.go: what the state directory holds: the journal of a rollout in progress,
//     and the node's State (what it runs, its restarts, its last failure).
//   - nodefiles.go: NodeFiles, the named steps of one rollout on one node (Begin, WritePolicy,
//     BumpManifest, Commit; Abort, Restore, FinishRollback, FinishStopped; Recover), recorded in
//     the journal so that an agent killed between any two steps finishes or undoes the change. A
//     rollback undoes only kaudit's own changes on a manifest someone else changed meanwhile.
//   - health.go: success is the mirror pod showing the new annotation, its apiserver container
//     started after the change, and the local /readyz answering ok.
//   - rollout.go: Rollout runs the steps and the health wait, and rolls back on failure.
//   - lease.go, status.go: the Lease kaudit-system/kaudit-rollout, and the node's own entry in
//     the singleton's status.nodes (server-side apply, field manager kaudit-agent-<node>).
//   - failover.go: Failover, a client that asks the node's own apiserver first and the
//     kubernetes Service when it does not answer (the Lease the other way round).
//   - drift.go: drift of the node's files from the revision it applied (package internal/drift
//     compares them), found on file-change notification and at each pass, reported (phase
//     Drifted, events, DriftMetrics) and restored, restarting kube-apiserver through the rollout
//     only when it may run the drifted policy.
//   - agent.go: the level-triggered loop of `kaudit agent` (New, Run, Pass): the next target
//     (only the revision and hash the manager recorded), whether the node may restart now (its
//     own failure, a failed node halting the rollout, a kubeadm upgrade, minRestartInterval), the
//     rollout under the Lease, coalescing, events.
//
// Driving it from an end-to-end suite: every path is a flag of `kaudit agent` (--root,
// --manifest, --policy-file, --state-dir), the node name comes from $NODE_NAME, /readyz from
// --readyz-url (with --readyz-ca-file/--readyz-server-name or --readyz-insecure-skip-verify, and
// --readyz-token-file where anonymous auth is off). The agent logs one JSON line "rollout
// finished" per rollout with seconds, healthWaitSeconds and overheadSeconds; its state is
// /etc/kubernetes/kaudit/state.json (restarts, rollbacks, last failure) and, during a rollout,
// journal.json.
package agent
