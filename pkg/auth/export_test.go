package auth

// SetPasswordCost lowers the bcrypt cost so that tests stay fast; it
// returns a function restoring the previous cost.
func SetPasswordCost(c int) (restore func()) {
	old := passwordCost
	passwordCost = c
	return func() { passwordCost = old }
}
