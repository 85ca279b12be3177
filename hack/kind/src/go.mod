// Small static helpers for the offline kind setup. A module of its own so the
// project's `go build ./...` and `go test ./...` never see them.
module kaudit.local/kind-helpers

go 1.26
