// Runs the official @bitrix24/b24jssdk PullClient under Node for pushpull's
// interop tests.
//
// Input: one JSON object, as the first argument or as the first stdin line:
//   {"config": <pull.application.config.get result>, "userId": 1,
//    "transport": "websocket"|"longpolling", "mid": "<26 digits>"?}
// `node pullclient.mjs --selftest` only loads the SDK and builds a client.
//
// Output: one JSON line per event on stdout:
//   {"event":"status","status":"connect"|"online"|"offline"}
//   {"event":"message","module_id","command","params","extra","mid"}
//       every message the client hands to the app; "client":true when the
//       sender is another client (v4). "mid" is the client's session mid once
//       the frame carrying the message was read: the point it resumes from.
//   {"event":"rest","method","params"}   the client asked for its config
//   {"event":"error","level","error"}    an SDK warning or error
//   {"event":"sent","cmd"}               a stdin command was carried out
//   {"event":"stopped","mid"}            last line, on a clean exit
//
// Further stdin lines are commands (v4 and v5 client publishing):
//   {"cmd":"sendMessage","users":[2],"moduleId","command","params","expiry"?}
//   {"cmd":"sendMessageToChannels","channels":["<public id>.<signature>"],…}
// and, version 5 (JSON-RPC), each answered by {"event":"sent","cmd","result"}:
//   {"cmd":"ping"}  {"cmd":"listChannels"}  {"cmd":"getUsersLastSeen","userList":[1]}
//   {"cmd":"subscribeUserStatusChange","userId":2}, whose callback prints
//       {"event":"userStatus","userId","isOnline"}
//   {"cmd":"disconnect"}  {"cmd":"connect"}   drop and re-open the connection,
//       as after a network change; the client resumes from its session mid.
// It exits on SIGTERM or when stdin closes.
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import XMLHttpRequest from 'xhr2';

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const selftest = process.argv[2] === '--selftest';
const input = selftest ? { userId: 1, config: null }
  : JSON.parse(process.argv[2] ?? (await lines.next()).value ?? '{}');

// The smallest browser the SDK needs (spec/clients.md). Leaving
// window.WebSocket undefined makes the client use long polling.
globalThis.window = new EventTarget();
if (input.transport !== 'longpolling') {
  window.WebSocket = WebSocket;
  globalThis.WebSocket = WebSocket;
}
globalThis.XMLHttpRequest = XMLHttpRequest;

const { B24PullClientManager, AbstractLogger, LogLevel } = await import('@bitrix24/b24jssdk');
// Version 4's HTTP client reads document.location once a document exists;
// it must be set after the import (spec/clients.md).
globalThis.document = { location: { href: input.config?.server?.long_polling ?? input.rest?.url ?? input.rest?.webhook ?? input.oauth?.options?.clientEndpoint ?? 'http://localhost/' } };

// The REST side: with input.rest ({url, auth}) the client's calls go to
// pushpull's own REST API over HTTP, as a REST application's would;
// otherwise every config request gets input.config.
const callREST = async (method, params) => {
  // A webhook URL carries its credentials in the path; a token goes in auth.
  const target = input.rest.webhook ? `${input.rest.webhook}${method}.json` : `${input.rest.url}/rest/${method}.json`;
  const resp = await fetch(target, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(input.rest.webhook ? params : { ...params, auth: input.rest.auth }),
  });
  const body = await resp.json();
  if (body.error) {
    throw new Error(`${method}: ${resp.status} ${body.error}: ${body.error_description}`);
  }
  return body;
};
// With input.oauth ({options, secret}) the official B24OAuth client talks
// to pushpull's REST and refreshes its token at /oauth/token/ itself.
const { B24OAuth } = await import('@bitrix24/b24jssdk');
const oauth = input.oauth ? new B24OAuth(input.oauth.options, input.oauth.secret) : null;
oauth?.setCallbackRefreshAuth(async ({ authData }) => out({ event: 'refresh', expires: authData?.expires }));
const b24 = oauth ?? {
  actions: {
    v2: {
      call: {
        make: async ({ method, params }) => {
          out({ event: 'rest', method, params });
          const body = input.rest ? await callREST(method, params) : { result: structuredClone(input.config) };
          return { getData: () => body };
        },
      },
    },
  },
};

// No localStorage here: skipStorageInit keeps the SDK from logging an error
// each time it would touch it (restart, destroy), which is all it changes.
const client = new B24PullClientManager({
  b24, restApplication: 'pushpull.interop', userId: input.userId ?? 1, skipStorageInit: true,
});
if (selftest) {
  out({ event: 'selftest', ok: typeof client.start === 'function' && client.status === 'offline' });
  process.exit(0);
}

// The SDK reports problems (unparsable frames, connection errors, skipped
// duplicates, handler exceptions) only through its logger.
let stopping = false;
class ErrorLines extends AbstractLogger {
  async log(level, message, context) {
    if (level < LogLevel.WARNING || stopping) return;
    const detail = context?.error ?? context?.errorEvent ?? context?.errorType;
    const text = String(message).replace(/^[\d-]+ [\d:]+: /, ''); // drop the SDK's timestamp
    out({ event: 'error', level: LogLevel[level].toLowerCase(), error: detail ? `${text} ${detail}` : text });
  }
}
const logger = new ErrorLines();
client.setLogger(logger);

// subscribe() has no wildcard (it needs a moduleId). Every delivered message
// also goes through the instance hook onCustomEvent, a no-op in the SDK (the
// stand-in for BX.onCustomEvent, Bitrix's catch-all): that is the catch-all.
const message = (extraFields, moduleId, command, params, extra) => out({
  event: 'message', ...extraFields, module_id: moduleId, command, params, extra, mid: client.session.mid,
});
client.onCustomEvent = (name, args) => {
  switch (name) {
    case 'onPullEvent': return message({}, ...args);
    case 'onPullClientEvent': return message({ client: true }, ...args);
    case 'onPullOnlineEvent': return message({}, 'online', ...args);
    case 'onPullError': return out({ event: 'error', level: 'error', error: String(args[0]) });
  }
};
client.subscribe({ type: 'status', callback: ({ status }) => out({ event: 'status', status }) });

// Resume: the SDK sends session.mid as `mid=` on every (re)connect. A reloaded
// page gets it from the saved session; setLastMessageId is the public setter.
if (input.mid) client.setLastMessageId(input.mid);

const stop = () => {
  stopping = true;
  try { client.destroy(); } catch { /* exiting anyway */ }
  out({ event: 'stopped', mid: client.session.mid });
  process.exit(0);
};
process.on('SIGTERM', stop);
// A rejection the SDK leaves unhandled would end Node silently; report it.
process.on('unhandledRejection', (reason) => out({ event: 'error', level: 'error', error: `unhandled rejection: ${JSON.stringify(reason) ?? reason}` }));

client.start(input.config ? structuredClone(input.config) : null).then(
  // Connectors are built inside start() with their own null loggers.
  () => client.setLogger(logger),
  (error) => out({ event: 'error', level: 'error', error: `start: ${error?.ex?.error_description ?? error}` }),
);

const commands = {
  sendMessage: (c) => client.sendMessage(c.users, c.moduleId, c.command, c.params, c.expiry),
  sendMessageToChannels: (c) => client.sendMessageToChannels(c.channels, c.moduleId, c.command, c.params, c.expiry),
  ping: () => client.ping(),
  listChannels: () => client.listChannels(),
  getUsersLastSeen: (c) => client.getUsersLastSeen(c.userList),
  subscribeUserStatusChange: (c) => client.subscribeUserStatusChange(c.userId,
    ({ userId, isOnline }) => out({ event: 'userStatus', userId, isOnline })),
  disconnect: () => client.disconnect(1000, 'interop disconnect'),
  connect: () => client.connect(),
};
for await (const line of lines) {
  const c = JSON.parse(line);
  Promise.resolve().then(() => commands[c.cmd](c)).then(
    (result) => out({ event: 'sent', cmd: c.cmd, result }),
    (error) => out({ event: 'error', level: 'error', error: `${c.cmd}: ${JSON.stringify(error) ?? error}` }),
  );
}
stop();
