// Package netpoll holds the socket mechanics of the push server's
// WebSockets, which know nothing of any protocol: a readiness poller that
// starts a goroutine only when a socket has something to read (so an idle
// connection holds no goroutine), and a non-blocking writev that hands many
// shared buffers to a socket in one system call.
package netpoll
