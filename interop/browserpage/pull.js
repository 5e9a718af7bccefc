// The page of the browser tests of the official PullClient
// (browser_pullclient_test.go). It loads @bitrix24/b24jssdk's UMD bundle as
// any web page would (window.B24Js) from an origin other than the server's,
// and the test drives it through two functions:
//
//   startPull({userId, restApplication, forceLongPolling, oauth: {options, secret}})
//       builds a B24OAuth (the SDK's own REST client, which refreshes an
//       expired token at the server's /oauth/token/) and a
//       B24PullClientManager on it, and starts the client: it fetches its
//       config cross-origin with pull.application.config.get and connects.
//   send(method, args)   calls client[method](...args), e.g. sendMessage.
//   appChannel(userId)   the "publicId.signature" of the user's channel of
//       this application (pull.channel.public.list with APPLICATION=Y), to
//       which a version 4 client sends with sendMessageToChannels.
//   publishLabelled(channel, moduleId, command, params)   what a browser
//       client of its own would do: the SDK's RequestBatch posted to the
//       client publish route with fetch and a Content-Type, so cross-origin
//       it needs the route's CORS preflight (the SDK's own XHR sends no
//       Content-Type and needs none).
//
// What happens is reported through window.harnessEmit (see browser.mjs):
//   {kind: 'status', status}          the client's status changes
//   {kind: 'message', client, module_id, command, params, extra, mid}
//       a message handed to the app; client is true when another client
//       (not the server's backend) sent it
//   {kind: 'refresh', expires}        B24OAuth refreshed its token
//   {kind: 'started'}                 start() resolved
// The SDK's warnings and errors, which it reports only to its logger, are
// written with console.error, which fails the test.
'use strict';

const emit = (data) => {
  const item = document.createElement('li');
  item.textContent = JSON.stringify(data);
  document.getElementById('log').append(item);
  window.harnessEmit(data);
};

window.startPull = (opts) => {
  const { AbstractLogger, B24OAuth, B24PullClientManager, LogLevel } = window.B24Js;

  class ConsoleErrors extends AbstractLogger {
    async log(level, message, context) {
      if (level < LogLevel.WARNING) return;
      const detail = context?.error ?? context?.errorEvent ?? context?.errorType;
      console.error(`PullClient ${LogLevel[level]}: ${message}`, detail ?? '');
    }
  }
  const logger = new ConsoleErrors();

  if (opts.forceLongPolling) {
    // What the SDK reads to decide that WebSocket is blocked
    // (SharedConfig.isWebSocketBlocked): a flag in localStorage, keyed by
    // user and site, holding the time until which it stands. The client
    // then connects by long polling from the start, as it does in a
    // browser whose WebSocket connections were found blocked.
    localStorage.setItem(`@bitrix24/b24jssdk-pull-${opts.userId}-${opts.restApplication}-bx-pull-websocket-blocked`,
      JSON.stringify(Date.now() + 3600 * 1000));
  }

  const b24 = new B24OAuth(opts.oauth.options, opts.oauth.secret);
  b24.setCallbackRefreshAuth(async ({ authData }) => emit({ kind: 'refresh', expires: authData?.expires }));
  const client = new B24PullClientManager({ b24, restApplication: opts.restApplication, userId: opts.userId });
  client.setLogger(logger);

  // subscribe() has no wildcard; every message also passes through the
  // instance hook onCustomEvent (a no-op in the SDK), the catch-all.
  const message = (fromClient, moduleId, command, params, extra) => emit({
    kind: 'message', client: fromClient, module_id: moduleId, command, params, extra, mid: client.session.mid,
  });
  client.onCustomEvent = (name, args) => {
    switch (name) {
      case 'onPullEvent': return message(false, ...args);
      case 'onPullClientEvent': return message(true, ...args);
      case 'onPullError': return console.error('PullClient onPullError:', args[0]);
    }
  };
  client.subscribe({
    type: 'status',
    callback: ({ status }) => {
      document.getElementById('status').value = status;
      emit({ kind: 'status', status });
    },
  });
  window.pull = client;
  window.b24 = b24;

  client.start().then(
    // Connectors are built inside start() with their own null loggers.
    () => { client.setLogger(logger); emit({ kind: 'started' }); },
    (error) => console.error('PullClient start failed:', error?.ex?.error_description ?? error),
  );
  return true;
};

window.send = async (method, args) => (await window.pull[method](...args)) ?? null;

window.appChannel = async (userId) => {
  const resp = await window.b24.actions.v2.call.make({
    method: 'pull.channel.public.list', params: { USERS: [userId], APPLICATION: 'Y' },
  });
  const ch = resp.getData().result[userId];
  return `${ch.public_id}.${ch.signature}`;
};

window.publishLabelled = async (channel, moduleId, command, params) => {
  const batch = window.pull.encodeMessageBatch([{ channelList: [channel], body: { module_id: moduleId, command, params } }], {});
  const resp = await fetch(window.pull.getPublicationPath(), {
    method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: batch,
  });
  return { status: resp.status, body: await resp.text() };
};
