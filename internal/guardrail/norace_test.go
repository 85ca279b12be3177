//go:build !race

package guardrail

const raceDetector = false
