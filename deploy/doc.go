// Package deploy holds the files that install pushpull (the systemd unit,
// the Dockerfile, the example config); it has no code, only tests that keep
// those files true to the server.
package deploy
