//go:build race

package guardrail

// raceDetector tells the property test to check fewer cases: the race detector makes the
// evaluator about ten times slower.
const raceDetector = true
