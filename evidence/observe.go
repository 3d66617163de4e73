package evidence

// Observer is told of every sighting as it is recorded, before folding:
// for the parts that act on evidence (the quarantine) and must not wait
// for a line to be written. Observe runs on the recording goroutine, on
// the per-query and per-packet paths: it must decide fast, not block and
// not keep ev.
type Observer interface {
	Observe(ev *Event)
}

// SetObserver makes the Writer tell o of every sighting from now on; nil
// stops it. Excluded hosts (own addresses, --exclude) are never observed;
// the proof is final (trusted sources applied).
func (w *Writer) SetObserver(o Observer) {
	if o == nil {
		w.obs.Store(nil)
		return
	}
	w.obs.Store(&o)
}
