// Package inputerr is the one way kopsdr reports bad input: the field, the
// value that was given and how to fix it. Activities turn an *Error into a
// non-retryable Temporal error, because retrying bad input never helps and an
// operator at 3 a.m. needs to know exactly what to change.
package inputerr

import (
	"errors"
	"fmt"
)

// Type is the Temporal ApplicationError type used for bad input, so workflows
// and retry policies can recognise it.
const Type = "InvalidInput"

// Error names the offending field and value and says how to fix it.
type Error struct {
	Field string // JSON/flag name as the operator typed it, e.g. "backupStore"
	Value string // the value given ("" when missing)
	Fix   string // what to do instead
	Err   error  // optional underlying cause
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("invalid %s %q", e.Field, e.Value)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Fix != "" {
		msg += " (fix: " + e.Fix + ")"
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an *Error.
func New(field, value, fix string) *Error {
	return &Error{Field: field, Value: value, Fix: fix}
}

// Wrap returns an *Error with an underlying cause.
func Wrap(err error, field, value, fix string) *Error {
	return &Error{Field: field, Value: value, Fix: fix, Err: err}
}

// As reports whether err is or wraps an *Error.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
