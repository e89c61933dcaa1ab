package api

import "time"

// Approval is the payload of the approve and reject updates and signals of
// every gated workflow: {"by": "alice", "comment": "INC-42"}. The CLI fills
// By with the OS user when --by is not given.
type Approval struct {
	By      string `json:"by"`
	Comment string `json:"comment,omitempty"`
}

// Decision is how a gated workflow was approved or rejected, as its status
// and result show it.
type Decision struct {
	Decision string    `json:"decision"` // approved | rejected
	By       string    `json:"by"`
	Comment  string    `json:"comment,omitempty"`
	Via      string    `json:"via"` // input (approve: true) | update | signal
	At       time.Time `json:"at"`
}

// Decision values.
const (
	Approved = "approved"
	Rejected = "rejected"
)

// StepAwaitingApproval is the status step of a workflow that waits for a
// decision.
const StepAwaitingApproval = "awaiting approval"

// StepTime is when a step of a restore ran.
type StepTime struct {
	Step    string    `json:"step"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	Seconds float64   `json:"seconds,omitempty"`
}
