// Package app wires bhrd together: the store, the queue service, the API
// server and the enforcers, with New/Start/Stop so that tests can run the
// whole daemon in-process.
package app
