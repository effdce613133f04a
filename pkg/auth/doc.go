// Package auth owns users, roles, permissions and the hashing of passwords
// and API tokens. Persistence is behind Store, implemented by both queue
// stores.
package auth
