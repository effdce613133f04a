package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/bhrd/bhrd/pkg/dnsbl"
)

// cmdDNSBLKey makes an access key for a dnsbl enforcer: 12 lower-case
// letters, as Http:BL's, printed once with the entry that goes into the
// enforcer's dnsbl.keys (only the key's SHA-256 is kept there).
func cmdDNSBLKey(args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlagSet("dnsbl-key", stderr) // -config is accepted, not needed
	name := fs.String("name", "", "who the key is for (it labels the metrics)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *name == "" {
		return usageError{errors.New("-name is required")}
	}
	key, err := newDNSBLKey()
	if err != nil {
		return err
	}
	h := dnsbl.HashKey(key)
	fmt.Fprintf(stdout, "key: %s\n", key)
	fmt.Fprintf(stdout, "add to the enforcer's dnsbl.keys:\n  - {name: %q, sha256: %s}\n", *name, hex.EncodeToString(h[:]))
	return nil
}

func newDNSBLKey() (string, error) {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 12)
	for i := range b {
		// Rejection sampling: no bias towards the first letters.
		for {
			var r [1]byte
			if _, err := rand.Read(r[:]); err != nil {
				return "", err
			}
			if r[0] < 26*9 {
				b[i] = letters[r[0]%26]
				break
			}
		}
	}
	return string(b), nil
}
