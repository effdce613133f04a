// Package pgtest gives tests a real PostgreSQL server.
//
// A package's TestMain calls Main; every test (or benchmark) that needs a
// database calls NewDatabase and gets the URL of a fresh, empty database of
// its own, so tests never see each other's rows.
//
// The server is, in order of preference:
//   - the one BHRD_TEST_DATABASE_URL points at (its user must be allowed to
//     CREATE DATABASE);
//   - a throw-away cluster started from the installed PostgreSQL binaries
//     (/usr/lib/postgresql/<version>/bin, the highest version wins) in a
//     temporary directory, listening only on a unix socket inside it, and
//     removed when the tests end. initdb and postgres refuse to run as root,
//     so as root they run as the "postgres" user.
//
// With neither, tests that need a database skip with a loud message, or
// fail when BHRD_REQUIRE_PG=1 (as in CI), so that a missing server can never
// pass for a green run.
package pgtest
