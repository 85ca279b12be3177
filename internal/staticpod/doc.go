// Package staticpod edits the kube-apiserver static pod manifest as text, keeping every byte an
// edit does not touch: comments, key order, quoting and indentation stay as they were. It holds
// the edits the node agent makes: the policy-hash annotation (SetAnnotation, Annotation), and
// the audit flags with their hostPath mounts (EnsureFlags, PolicyFileInManifest).
//
// Each edit changes the manifest line by line, guided by the positions of a YAML parse (the
// text editor in text.go), and is then verified by decoding: the edited manifest must decode to
// the same Pod as the original with exactly the intended change applied (verifyEdit), so a
// layout this editor does not understand gives an error, never a wrong manifest.
//
// The files: pod.go (decoding and verifying), annotation.go (the annotation edit), flags.go and
// mounts.go (the flag and mount edits), text.go (the line-level editor).
package staticpod
