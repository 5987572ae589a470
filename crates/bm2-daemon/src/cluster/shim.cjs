// Preloaded by bm2 into the Node and Bun instances of a cluster app, and into the Node processes
// of a fork-mode app with a port.
//
// Cluster mode: whatever TCP port the app listens on (`listen(process.env.PORT)`,
// `listen(3000)`, `listen({ port, host })`), it listens on a port of 127.0.0.1 the system
// chooses instead (port 0: no other process can take it in between), and bm2 is told which port
// and address the app wanted and which port it got, so that bm2's balancer serves the wanted
// port for all instances. An app may listen on several ports; each is balanced.
//
// Under Node, each server on a private port also takes connections that bm2 hands over the IPC
// channel (Node's own handle passing, as in Node's cluster module): the worker then serves the
// client's socket directly. bm2 is told how many of those connections have closed, and when bm2
// drains this instance (reload, scale down), responses carry `Connection: close` so that
// keep-alive clients reconnect to a new instance after their current request.
//
// Fork mode: bm2 holds the listening socket of the instance's port and passes it to every process
// as descriptor BM2_LISTEN_FD. The first `listen(PORT)` (on all interfaces, or on bm2's
// listen_host) listens on that descriptor instead of binding the port, so that the old and the new
// process of a reload share one socket and no connection is refused between them. bm2 is told
// when the process listens on it, and when bm2 drains it (reload), the server stops accepting
// (its replacement takes the new connections), answers what it has with `Connection: close`, and
// says when its connections are closed.
'use strict';
const net = require('net');
const asPort = (v) => (typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v)) ? Number(v) : undefined);
const send = (message) => {
  try {
    if (typeof process.send === 'function') process.send(message);
  } catch (_) {
    // The channel is gone: bm2 is stopping this process.
  }
};
// The listen() methods of the servers the runtime has: Node's HTTP servers are net servers, Bun's
// have their own.
const serverClasses = () => {
  const classes = [net.Server];
  for (const name of ['http', 'https']) {
    try {
      const C = require(name).Server;
      if (C && C.prototype && Object.prototype.hasOwnProperty.call(C.prototype, 'listen')) classes.push(C);
    } catch (_) {
      // Not in this runtime.
    }
  }
  return classes;
};
// Set by bm2 for the instance's own process only: processes it starts (which inherit the preload
// and the environment) listen as they ask.
const clusterShim = process.env.BM2_CLUSTER_SHIM === '1';
delete process.env.BM2_CLUSTER_SHIM;
if (clusterShim && process.env.BM2_CLUSTER === 'true' && typeof process.send === 'function') {
  const handoff = !process.versions.bun;
  // The app's servers by the port they asked for.
  const servers = new Map();
  let closed = 0;
  let reportPending = false;
  let taking = false;

  // Closes are reported once per turn of the event loop, however many happened in it.
  const report = () => {
    if (reportPending) return;
    reportPending = true;
    setImmediate(() => {
      reportPending = false;
      send({ type: 'bm2:closed', n: closed });
    });
  };

  const takeConnections = () => {
    if (taking || !handoff) return;
    taking = true;
    process.on('internalMessage', (message, socket) => {
      if (!message || typeof message.cmd !== 'string') return;
      if (message.cmd === 'NODE_BM2_DRAIN') {
        for (const server of new Set(servers.values())) {
          server.prependListener('request', (req, res) => {
            if (!res.headersSent) res.setHeader('Connection', 'close');
          });
        }
        report();
        return;
      }
      if (message.cmd !== 'NODE_BM2_CONN') return;
      const server = servers.get(message.port);
      if (!server || !socket || !socket._handle) {
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

  // The TCP port and address a listen() call asks for, and the call that listens on a private
  // port of 127.0.0.1 instead; undefined when it asks for no fixed TCP port (a path, a
  // descriptor, a handle, port 0).
  const redirect = (args) => {
    const first = args[0];
    const callback = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
    let options;
    if (asPort(first) !== undefined) {
      options = { port: asPort(first) };
      if (typeof args[1] === 'string') options.host = args[1];
      const backlog = typeof args[1] === 'number' ? args[1] : typeof args[2] === 'number' ? args[2] : undefined;
      if (backlog !== undefined) options.backlog = backlog;
    } else if (first && typeof first === 'object' && first.fd === undefined && first.path === undefined &&
               first.handle === undefined && !first._handle && asPort(first.port) !== undefined) {
      options = Object.assign({}, first, { port: asPort(first.port) });
      delete options.ipv6Only;
    } else {
      return undefined;
    }
    if (options.port === 0) return undefined;
    const wanted = { port: options.port, host: typeof options.host === 'string' ? options.host : undefined };
    options.port = 0;
    options.host = '127.0.0.1';
    return { wanted, args: callback ? [options, callback] : [options] };
  };

  // The address to tell bm2: an IP address (a host name is resolved as the app's listen() would),
  // none for all interfaces.
  const addressOf = (host, done) => {
    if (host === undefined || host === '' || host === '::' || host === '0.0.0.0' || host === '::0') return done(undefined);
    if (net.isIP(host)) return done(host);
    // A name that does not resolve is passed on as it is: bm2 cannot listen on it and says so,
    // rather than serving the port on every interface.
    require('dns').lookup(host, (err, address) => done(err ? host : address));
  };

  for (const C of serverClasses()) {
    const listen = C.prototype.listen;
    C.prototype.listen = function (...args) {
      const r = this.__bm2Redirected ? undefined : redirect(args);
      if (!r) return listen.apply(this, args);
      this.__bm2Redirected = true;
      this.once('listening', () => {
        const address = this.address();
        if (!address || typeof address !== 'object') return;
        servers.set(r.wanted.port, this);
        takeConnections();
        addressOf(r.wanted.host, (host) => {
          const message = { type: 'bm2:listen', port: r.wanted.port, private: address.port };
          if (host !== undefined) message.host = host;
          send(message);
        });
      });
      try {
        return listen.apply(this, r.args);
      } finally {
        this.__bm2Redirected = false;
      }
    };
  }
}

const heldFd = Number(process.env.BM2_LISTEN_FD);
const heldPort = Number(process.env.BM2_LISTEN_PORT);
const heldHost = process.env.BM2_LISTEN_HOST || '';
if (process.env.BM2_CLUSTER !== 'true' && heldFd >= 3 && heldPort > 0) {
  // The descriptor is this process's: processes it starts (which inherit the preload) must not
  // take whatever their descriptor of that number is.
  delete process.env.BM2_LISTEN_FD;
  delete process.env.BM2_LISTEN_PORT;
  delete process.env.BM2_LISTEN_HOST;
  const anyHost = (h) => h === undefined || h === null || h === '' || h === '::' || h === '0.0.0.0' || h === '::0';
  const listen = net.Server.prototype.listen;
  let adopted = false;

  // The port and host a `listen()` call asks for, when it asks for a TCP port.
  const wanted = (args) => {
    const first = args[0];
    if (asPort(first) !== undefined) {
      return { port: asPort(first), host: typeof args[1] === 'string' ? args[1] : undefined };
    }
    if (first && typeof first === 'object' && first.fd === undefined && first.path === undefined && first.handle === undefined && !first._handle) {
      const port = asPort(first.port);
      if (port !== undefined) return { port, host: first.host, backlog: first.backlog };
    }
    return undefined;
  };

  const drainOn = (server) => {
    process.on('internalMessage', (message) => {
      if (!message || message.cmd !== 'NODE_BM2_DRAIN') return;
      server.prependListener('request', (req, res) => {
        if (!res.headersSent) res.setHeader('Connection', 'close');
      });
      server.close(() => send({ type: 'bm2:drained' }));
      if (typeof server.closeIdleConnections === 'function') {
        server.closeIdleConnections();
        setInterval(() => server.closeIdleConnections(), 50).unref();
      }
    });
  };

  net.Server.prototype.listen = function (...args) {
    const first = args[0];
    // An app that takes the socket itself (socket activation: `listen({ fd: 3 })`).
    const own = !adopted && first !== null && typeof first === 'object' && Number(first.fd) === heldFd;
    const w = adopted || own ? undefined : wanted(args);
    const redirect = w !== undefined && w.port === heldPort && (anyHost(w.host) || (heldHost !== '' && w.host === heldHost));
    if (!own && !redirect) return listen.apply(this, args);
    adopted = true;
    // Reported once the app's own 'listening' callbacks have run.
    this.once('listening', () => {
      drainOn(this);
      setImmediate(() => send({ type: 'bm2:listening' }));
    });
    if (own) return listen.apply(this, args);
    const callback = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
    const backlog = w.backlog !== undefined ? w.backlog : (typeof args[1] === 'number' ? args[1] : typeof args[2] === 'number' ? args[2] : undefined);
    const options = backlog !== undefined ? { fd: heldFd, backlog } : { fd: heldFd };
    return callback ? listen.call(this, options, callback) : listen.call(this, options);
  };
}
