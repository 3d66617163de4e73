// Package quarantine keeps who is in the walled garden: the policy, the entries
// on the store with their audit trail, and the set the enforcement points read.
package quarantine
