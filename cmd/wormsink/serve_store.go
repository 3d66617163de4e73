package main

import (
	"context"
	"fmt"

	"wormsink/store"
)

// database opens --db the first time a part needs it; every part that
// keeps state (attribution, quarantine) shares the one handle, closed when
// serve ends.
func (s *server) database() (*store.DB, error) {
	if s.db != nil {
		return s.db, nil
	}
	db, err := openDB(context.Background(), s.cfg.db)
	if err != nil {
		return nil, fmt.Errorf("--db: %w", err)
	}
	s.db = db
	return db, nil
}
