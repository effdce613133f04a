package main

import (
	"errors"
	"io"
)

// cmdUser and cmdToken are replaced by the user and token administration
// commands together with pkg/auth.
func cmdUser(args []string, stdout, stderr io.Writer) error {
	return errors.New("user administration is not built yet")
}

func cmdToken(args []string, stdout, stderr io.Writer) error {
	return errors.New("token administration is not built yet")
}
