// Preloaded by bm2 into the Node and Bun instances of a cluster app. An app that listens on a
// fixed port (`server.listen(3000)`) is made to listen on its private port instead, and bm2 is
// told which public port it wanted, so that bm2's balancer serves that port for all instances.
'use strict';
const net = require('net');
const privatePort = Number(process.env.PORT);
if (process.env.BM2_CLUSTER === 'true' && privatePort > 0) {
  const listen = net.Server.prototype.listen;
  const asPort = (v) => (typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v)) ? Number(v) : undefined);
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
    if (wanted !== undefined) {
      this.once('listening', () => {
        if (typeof process.send === 'function') process.send({ type: 'bm2:listen', port: wanted });
      });
    }
    return listen.apply(this, args);
  };
}
