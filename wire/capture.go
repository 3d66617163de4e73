package wire

import "errors"

// ErrCaptureClosed is what a Capture's Serve returns once it was stopped,
// by its context or by Shutdown.
var ErrCaptureClosed = errors.New("wire: capture closed")
