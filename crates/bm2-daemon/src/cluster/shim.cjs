// Preloaded by bm2 into the Node and Bun instances of a cluster app.
//
// An app that listens on a fixed port (`server.listen(3000)`) is made to listen on its private
// port instead, and bm2 is told which public port it wanted, so that bm2's balancer serves that
// port for all instances.
//
// Under Node, the server on the private port also takes connections that bm2 hands over the IPC
// channel (Node's own handle passing, as in Node's cluster module): the worker then serves the
// client's socket directly. bm2 is told how many of those connections have closed, and when bm2
// drains this instance (reload, scale down), responses carry `Connection: close` so that
// keep-alive clients reconnect to a new instance after their current request.
'use strict';
const net = require('net');
const privatePort = Number(process.env.PORT);
if (process.env.BM2_CLUSTER === 'true' && privatePort > 0 && typeof process.send === 'function') {
  const send = (message) => {
    try {
      process.send(message);
    } catch (_) {
      // The channel is gone: bm2 is stopping this process.
    }
  };
  const listen = net.Server.prototype.listen;
  const asPort = (v) => (typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v)) ? Number(v) : undefined);
  const handoff = !process.versions.bun;
  let target = null;
  let closed = 0;
  let reportPending = false;

  // Closes are reported once per turn of the event loop, however many happened in it.
  const report = () => {
    if (reportPending) return;
    reportPending = true;
    setImmediate(() => {
      reportPending = false;
      send({ type: 'bm2:closed', n: closed });
    });
  };

  const takeConnections = (server) => {
    if (target || !handoff) return;
    target = server;
    process.on('internalMessage', (message, socket) => {
      if (!message || typeof message.cmd !== 'string') return;
      if (message.cmd === 'NODE_BM2_DRAIN') {
        server.prependListener('request', (req, res) => {
          if (!res.headersSent) res.setHeader('Connection', 'close');
        });
        report();
        return;
      }
      if (message.cmd !== 'NODE_BM2_CONN') return;
      if (!socket || !socket._handle) {
        closed += 1;
        if (socket) socket.destroy();
        report();
        return;
      }
      // As a connection accepted by the server itself.
      server._connections += 1;
      socket.server = server;
      socket._server = server;
      socket.once('close', () => {
        closed += 1;
        report();
      });
      server.emit('connection', socket);
    });
    send({ type: 'bm2:handoff' });
  };

  net.Server.prototype.listen = function (...args) {
    let wanted;
    const first = args[0];
    if (asPort(first) !== undefined) {
      wanted = asPort(first);
      if (wanted !== 0 && wanted !== privatePort) args[0] = privatePort; else wanted = undefined;
    } else if (first && typeof first === 'object' && asPort(first.port) !== undefined) {
      wanted = asPort(first.port);
      if (wanted !== 0 && wanted !== privatePort) args[0] = Object.assign({}, first, { port: privatePort }); else wanted = undefined;
    }
    this.once('listening', () => {
      const address = this.address();
      if (!address || typeof address !== 'object' || address.port !== privatePort) return;
      if (wanted !== undefined) send({ type: 'bm2:listen', port: wanted });
      takeConnections(this);
    });
    return listen.apply(this, args);
  };
}
