// Runs the official @bitrix24/b24jssdk PullClient under Node for pushpull's
// interop tests. Input: one JSON argument
//   {"config": <pull.application.config.get result>, "userId": 1,
//    "transport": "websocket"|"longpolling", "mid": "<26 digits>"?,
//    "moduleIds": ["application"]?}
// Output: one JSON line per event on stdout:
//   {"event":"status","status":"online"|"connect"|"offline"}
//   {"event":"message","module_id","command","params","extra","mid"}
//   {"event":"rest","method"} when the client asks for its config again
//   {"event":"error","error"}
// Messages from other clients (protocol version 4) are "message" events with
// "client": true. Each stdin line is a command:
//   {"cmd":"sendMessage","users":[2],"moduleId","command","params","expiry"?}
//   {"cmd":"sendMessageToChannels","channels":["<public id>.<signature>"],…}
// It runs until stdin closes or it gets SIGTERM.
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import XMLHttpRequest from 'xhr2';

const input = JSON.parse(process.argv[2] ?? '{}');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

// The smallest browser the SDK needs (spec/clients.md). Leaving
// window.WebSocket undefined makes the client use long polling.
globalThis.window = new EventTarget();
if (input.transport !== 'longpolling') {
  window.WebSocket = WebSocket;
  globalThis.WebSocket = WebSocket;
}
globalThis.XMLHttpRequest = XMLHttpRequest;

const { B24PullClientManager } = await import('@bitrix24/b24jssdk');
if (input.selftest) {
  out({ event: 'selftest', ok: typeof B24PullClientManager === 'function' });
  process.exit(0);
}
// Version 4's HTTP client reads document.location once a document exists;
// it must be set after the import (spec/clients.md).
globalThis.document = { location: { href: input.config.server.long_polling } };

// The REST side is the test: every config request gets the same config.
const b24 = {
  actions: {
    v2: {
      call: {
        make: async ({ method }) => {
          out({ event: 'rest', method });
          return { getData: () => ({ result: structuredClone(input.config) }) };
        },
      },
    },
  },
};

const client = new B24PullClientManager({ b24, restApplication: 'pushpull.interop', userId: input.userId ?? 1 });
if (input.mid) {
  // What the SDK restores from its saved session when a page reloads.
  client.session.mid = input.mid;
}
for (const moduleId of input.moduleIds ?? ['application']) {
  client.subscribe({
    type: 'server',
    moduleId,
    callback: (data) => out({
      event: 'message', module_id: moduleId, command: data.command, params: data.params,
      extra: data.extra, mid: client.session.mid,
    }),
  });
}
for (const moduleId of input.moduleIds ?? ['application']) {
  client.subscribe({
    type: 'client',
    moduleId,
    callback: (data) => out({
      event: 'message', client: true, module_id: moduleId, command: data.command, params: data.params,
      extra: data.extra, mid: client.session.mid,
    }),
  });
}
client.subscribe({ type: 'status', callback: (data) => out({ event: 'status', status: data.status }) });

const stop = () => {
  try { client.destroy(); } catch { /* exiting anyway */ }
  process.exit(0);
};
process.on('SIGTERM', stop);
const lines = createInterface({ input: process.stdin });
lines.on('close', stop);
lines.on('line', (line) => {
  const c = JSON.parse(line);
  const sent = c.cmd === 'sendMessage'
    ? client.sendMessage(c.users, c.moduleId, c.command, c.params, c.expiry)
    : client.sendMessageToChannels(c.channels, c.moduleId, c.command, c.params, c.expiry);
  Promise.resolve(sent).then(
    () => out({ event: 'sent', cmd: c.cmd }),
    (error) => out({ event: 'error', error: String(error) }),
  );
});

client.start(structuredClone(input.config)).catch((error) => out({ event: 'error', error: String(error?.ex?.error_description ?? error) }));
