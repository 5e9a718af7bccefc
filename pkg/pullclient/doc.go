// Package pullclient is a Go client for a Bitrix24-compatible push server
// (pushpull, or Bitrix's own Push server): it subscribes to channels over a
// WebSocket or long polling and hands each message to the caller as a typed
// event.
//
// A client is configured either from the answer of the REST method
// pull.application.config.get ([ParseConfig]), or by hand with signed
// channel ids and the server's URLs ([Config]). It speaks the three wire
// protocols a server offers side by side: version 3 text frames (or their
// format=json variant), version 4 protobuf (binaryMode=true) and version 5
// JSON-RPC with the config's JWT (jsonRpc=true). A shared-mode config
// (server.mode "shared", one server for many portals) names the portal with
// its clientId, which every subscribe then carries; by hand, put
// clientId=… in the subscribe URL's query.
//
// Like the official JavaScript PullClient it remembers the id (mid) of the
// last message it received and sends it when it reconnects, so that the
// server replays what was published in between: nothing is lost across a
// dropped connection, and the last ids received are remembered so that
// nothing is handed over twice. Lost connections are retried with a
// jittered, capped exponential backoff; after the server_restart command
// the client waits ServerRestartDelay instead, as the official clients do.
//
// [Run] is the blocking form: it calls a function for every event until its
// context ends. [Dial] is the background form: it returns once the first
// connection is up and delivers events on a channel until [Client.Close],
// which waits for every goroutine it started.
package pullclient
