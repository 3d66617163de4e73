//go:build race

package main

// raceEnabled: the race detector slows Go code 2-20x, which timing
// budgets of the tests must allow for.
const raceEnabled = true
