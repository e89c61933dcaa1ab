package backupstore

// IMDSAddr is the instance metadata address tests must never see dialled.
const IMDSAddr = imdsAddr

// SetDialControl replaces the hook that sees every connection of a local
// S3 client (network, resolved address) until the returned function is
// called; an error refuses the connection.
func SetDialControl(f func(network, address string) error) (restore func()) {
	old := dialControl
	dialControl = f
	return func() { dialControl = old }
}

// UseSDKRetryer makes stores opened until restore is called use the SDK's
// default retryer instead of kopsdr's.
func UseSDKRetryer() (restore func()) {
	sdkRetryer = true
	return func() { sdkRetryer = false }
}
