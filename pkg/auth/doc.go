// Package auth owns users, roles, permissions and the hashing of passwords
// and API tokens. Persistence is behind Store, implemented by both queue
// stores.
//
// Roles map BHR's Django groups (roles.go); passwords are bcrypt hashes;
// API tokens are 256-bit random secrets stored only as SHA-256 hashes
// (hash.go). The Authenticator checks credentials with a short-lived cache
// and administers users and tokens so that its cache stays truthful.
package auth
