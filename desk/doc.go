// Package desk is the abuse team's working place: it takes in every sensor's
// evidence exactly once, folds it into one case per subscriber (or address),
// and serves the cases, their actions and accounts over HTML and a JSON API.
package desk
